//! Paths named on the command line: outputs that must not be inputs.

/// Refuses, before any work, output paths (flag, path) that are existing input files.
pub(crate) fn refuse_inputs_as_outputs(
    outputs: &[(&str, Option<&std::path::Path>)],
    inputs: &[Option<&std::path::Path>],
) -> anyhow::Result<()> {
    let outs: Vec<(&str, &std::path::Path)> = outputs
        .iter()
        .filter_map(|(f, p)| p.map(|p| (*f, p)))
        .collect();
    let ins: Vec<&std::path::Path> = inputs.iter().flatten().copied().collect();
    arvae_core::files::refuse_inputs_as_outputs(&outs, &ins).map_err(anyhow::Error::msg)
}
