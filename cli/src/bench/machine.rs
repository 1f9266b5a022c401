//! What the machine does with an idle CPU, which a benchmark's latencies depend on as much
//! as on the code: read from sysfs and printed with every orders report.
//!
//! On a virtual machine whose cpuidle driver is `haltpoll`, `guest_halt_poll_ns` says how
//! long an idle vCPU polls for work before it halts. At 0 it halts at once, and every
//! wake-up of a thread on an idle vCPU (a reply reaching a waiting task, a statement
//! handed to sqlx's SQLite thread) costs an exit to the hypervisor: on the development VM
//! the raw NATS echo's p50 was 139–141 µs at 0 and 71–76 µs at 200,000 ns, the same build's
//! one-client order p50 1.58–1.67 ms and 1.14–1.22 ms (docs/BENCHMARKS.md, 2026-12-06). Two
//! runs compare only on the same setting.

use std::path::Path;

use serde::Serialize;

/// The idle-CPU settings of this machine, where it has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// The cpuidle driver (`haltpoll`, `intel_idle`, `acpi_idle`…).
    pub cpuidle_driver: Option<String>,
    /// The cpuidle governor (`haltpoll`, `menu`, `teo`…).
    pub cpuidle_governor: Option<String>,
    /// The haltpoll driver's `guest_halt_poll_ns`: how long an idle vCPU polls before it
    /// halts.
    pub guest_halt_poll_ns: Option<u64>,
}

impl Machine {
    /// This machine's settings, from `/sys`.
    pub fn read() -> Self {
        Self::read_from(Path::new("/sys"))
    }

    /// The settings under a sysfs mounted at `sys` (a directory of the same layout in tests).
    pub fn read_from(sys: &Path) -> Self {
        let text = |path: &str| {
            std::fs::read_to_string(sys.join(path))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        Self {
            cpuidle_driver: text("devices/system/cpu/cpuidle/current_driver"),
            cpuidle_governor: text("devices/system/cpu/cpuidle/current_governor"),
            guest_halt_poll_ns: text("module/haltpoll/parameters/guest_halt_poll_ns")
                .and_then(|s| s.parse().ok()),
        }
    }

    /// One sentence for the report, e.g. "cpuidle driver haltpoll (governor haltpoll),
    /// guest_halt_poll_ns 0: an idle vCPU halts at once, so waking a thread there costs a
    /// hypervisor exit."
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.cpuidle_driver, &self.cpuidle_governor) {
            (Some(driver), Some(governor)) => {
                parts.push(format!("cpuidle driver {driver} (governor {governor})"));
            }
            (Some(driver), None) => parts.push(format!("cpuidle driver {driver}")),
            (None, Some(governor)) => parts.push(format!("cpuidle governor {governor}")),
            (None, None) => {}
        }
        match self.guest_halt_poll_ns {
            Some(0) => parts.push(
                "guest_halt_poll_ns 0: an idle vCPU halts at once, so waking a thread there \
                 costs a hypervisor exit"
                    .to_string(),
            ),
            Some(ns) => parts.push(format!(
                "guest_halt_poll_ns {ns}: an idle vCPU polls that long before it halts"
            )),
            None => {}
        }
        if parts.is_empty() {
            "cpuidle settings unknown".to_string()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }

    #[test]
    fn a_haltpoll_guest_is_read_and_described_with_its_poll_time() {
        let sys = tempfile::tempdir().expect("tempdir");
        write(
            sys.path(),
            "devices/system/cpu/cpuidle/current_driver",
            "haltpoll\n",
        );
        write(
            sys.path(),
            "devices/system/cpu/cpuidle/current_governor",
            "haltpoll\n",
        );
        write(
            sys.path(),
            "module/haltpoll/parameters/guest_halt_poll_ns",
            "0\n",
        );
        let machine = Machine::read_from(sys.path());
        assert_eq!(
            machine,
            Machine {
                cpuidle_driver: Some("haltpoll".into()),
                cpuidle_governor: Some("haltpoll".into()),
                guest_halt_poll_ns: Some(0),
            }
        );
        assert_eq!(
            machine.describe(),
            "cpuidle driver haltpoll (governor haltpoll), guest_halt_poll_ns 0: an idle \
             vCPU halts at once, so waking a thread there costs a hypervisor exit"
        );
        write(
            sys.path(),
            "module/haltpoll/parameters/guest_halt_poll_ns",
            "200000",
        );
        assert!(Machine::read_from(sys.path())
            .describe()
            .ends_with("guest_halt_poll_ns 200000: an idle vCPU polls that long before it halts"));
    }

    #[test]
    fn a_machine_without_the_files_is_described_as_unknown() {
        let sys = tempfile::tempdir().expect("tempdir");
        write(
            sys.path(),
            "module/haltpoll/parameters/guest_halt_poll_ns",
            "not a number",
        );
        let machine = Machine::read_from(sys.path());
        assert_eq!(machine, Machine::default());
        assert_eq!(machine.describe(), "cpuidle settings unknown");
        write(
            sys.path(),
            "devices/system/cpu/cpuidle/current_governor",
            "menu",
        );
        assert_eq!(
            Machine::read_from(sys.path()).describe(),
            "cpuidle governor menu"
        );
        let polling = Machine {
            guest_halt_poll_ns: Some(200_000),
            ..Machine::default()
        };
        assert_eq!(
            polling.describe(),
            "guest_halt_poll_ns 200000: an idle vCPU polls that long before it halts"
        );
    }
}
