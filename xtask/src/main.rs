//! `cargo xtask bundle arvae-plugin --release`: builds the plugin and writes the `.clap` and
//! `.vst3` bundles to `target/bundled/`.

fn main() -> nice_plug_xtask::Result<()> {
    nice_plug_xtask::main()
}
