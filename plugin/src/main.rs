//! The plugin as a standalone application (`--features standalone`): the editor in its own
//! window, audio and MIDI through ALSA/JACK, or `--backend dummy` with no audio hardware (how
//! the README's editor screenshot is taken under Xvfb). `arvae-standalone --help` lists the
//! backend, sample rate, tempo and MIDI options.

fn main() {
    nice_plug::wrapper::standalone::nice_export_standalone::<arvae_plugin::ArvaePlugin>();
}
