//! Built-in suites selectable with `--preset`, embedded in the binary.

pub(crate) struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub toml: &'static str,
}

pub(crate) const PRESETS: &[Preset] = &[Preset {
    name: "sim",
    about: "two simulated engines (baseline and LMCache) on this machine, no GPU needed",
    toml: include_str!("../../presets/sim.toml"),
}];

pub(crate) fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
