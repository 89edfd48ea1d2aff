//! The host's /proc: a process's children and the titles they give themselves, read from the
//! kernel's files instead of asking the engine (whose `top` runs `ps` over every process on
//! the host).

/// The children of `pid` (of any of its threads) with their command lines, which are the
/// titles of processes that set one (nginx's workers: `nginx: worker process`). An error when
/// this host's /proc does not list children (a kernel without `CONFIG_PROC_CHILDREN`) or
/// `pid` is not in this process's pid namespace; a child that exits meanwhile is left out.
pub fn children(pid: u32) -> std::io::Result<Vec<(u32, String)>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let listed = std::fs::read_to_string(task?.path().join("children"))?;
        pids.extend(
            listed
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids.sort_unstable();
    Ok(pids
        .into_iter()
        .filter_map(|child| Some((child, title(child).ok()?)))
        .collect())
}

/// The command line of `pid` as `ps` shows it (a process's title, when it sets one).
pub fn title(pid: u32) -> std::io::Result<String> {
    Ok(joined(&std::fs::read(format!("/proc/{pid}/cmdline"))?))
}

/// A command line's NUL-separated arguments joined by spaces.
fn joined(cmdline: &[u8]) -> String {
    let text = String::from_utf8_lossy(cmdline);
    let args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
    args.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_a_child_by_its_command_line() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        // The parent learns of the exec before the kernel has set the new command line.
        let wanted = (child.id(), "sleep 30".to_owned());
        let mut listed = Vec::new();
        for _ in 0..100 {
            listed = super::children(std::process::id()).expect("this kernel lists children");
            if listed.contains(&wanted) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed.contains(&wanted), "{listed:?}");
    }

    #[test]
    fn titles_read_as_ps_shows_them() {
        // nginx overwrites its argv with a title and pads it with NULs.
        assert_eq!(
            super::joined(b"nginx: worker process\0\0\0\0"),
            "nginx: worker process"
        );
        assert_eq!(super::joined(b"sleep\x0030\0"), "sleep 30");
    }
}
