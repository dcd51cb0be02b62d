//! A rolling block as a run goes (SPEC §15): in the live view the whole
//! block is one line naming the hosts going through it now and where they
//! are in the block's order, `rollout on web2 (host 2 of 3)`, whichever
//! inner step each host is at; its end, in the live view and the plain
//! lines, says how many hosts went through it.

use std::collections::HashMap;

use crate::events::Event;
use crate::state::StepState;

/// The rolling blocks of a run and which of their instances run now.
#[derive(Debug, Default)]
pub struct Blocks {
    /// Instance id (`check@web2`) → its block.
    of: HashMap<String, String>,
    /// Block → its hosts, in the block's order.
    hosts: HashMap<String, Vec<String>>,
    /// Block → its instances running now, in the order they started.
    running: HashMap<String, Vec<String>>,
}

/// The host of an instance id: `web2` for `check@web2`.
fn host_of(instance: &str) -> &str {
    instance.split_once('@').map_or(instance, |(_, h)| h)
}

impl Blocks {
    /// From the instances of the blocks' inner steps, in plan order
    /// (instance id, block id): a block's hosts go in the order their
    /// first instance comes, which is the block's order.
    pub fn new(instances: impl IntoIterator<Item = (String, String)>) -> Blocks {
        let mut blocks = Blocks::default();
        for (instance, block) in instances {
            let hosts = blocks.hosts.entry(block.clone()).or_default();
            let host = host_of(&instance);
            if !hosts.iter().any(|h| h == host) {
                hosts.push(host.to_string());
            }
            blocks.of.insert(instance, block);
        }
        blocks
    }

    /// The block an instance is in.
    pub fn block_of(&self, step: &str) -> Option<&str> {
        self.of.get(step).map(String::as_str)
    }

    /// Whether `step` is a block itself (its checkpoint, done when every
    /// host is through).
    pub fn is_block(&self, step: &str) -> bool {
        self.hosts.contains_key(step)
    }

    /// Hosts of a block.
    pub fn host_count(&self, block: &str) -> usize {
        self.hosts.get(block).map_or(0, Vec::len)
    }

    /// The line of a block that every host went through:
    /// `✓ rollout  succeeded  (3 hosts through the block)`, not its own
    /// row's few milliseconds; `None` for any other end.
    pub fn finished_line(&self, palette: &super::style::Palette, event: &Event) -> Option<String> {
        let Event::StepFinished {
            step,
            state: state @ StepState::Succeeded,
            ..
        } = event
        else {
            return None;
        };
        let hosts = super::count(self.host_count(step), "host");
        self.is_block(step).then(|| {
            format!(
                "{} {step}  {state}  ({hosts} through the block)",
                palette.mark(*state)
            )
        })
    }

    /// An instance of `block` started.
    pub fn started(&mut self, block: &str, step: &str) {
        let running = self.running.entry(block.to_string()).or_default();
        if !running.iter().any(|s| s == step) {
            running.push(step.to_string());
        }
    }

    /// An instance of `block` ended; how many of the block's still run.
    pub fn finished(&mut self, block: &str, step: &str) -> usize {
        let running = self.running.entry(block.to_string()).or_default();
        running.retain(|s| s != step);
        running.len()
    }

    /// Instances of `block` running now.
    pub fn running(&self, block: &str) -> usize {
        self.running.get(block).map_or(0, Vec::len)
    }

    /// The block's line: the hosts in it now and where they are in its
    /// order, `rollout on web3, web4 (hosts 3–4 of 6)`; past three hosts
    /// a count, `rollout on 10 hosts (hosts 11–20 of 100)`.
    pub fn prefix(&self, block: &str) -> String {
        let all = self.hosts.get(block).map(Vec::as_slice).unwrap_or_default();
        let mut now: Vec<usize> = self
            .running
            .get(block)
            .into_iter()
            .flatten()
            .filter_map(|s| all.iter().position(|h| h == host_of(s)))
            .collect();
        now.sort_unstable();
        now.dedup();
        let names = if now.len() <= 3 {
            let names: Vec<&str> = now.iter().map(|&i| all[i].as_str()).collect();
            names.join(", ")
        } else {
            format!("{} hosts", now.len())
        };
        let place = match (now.first(), now.last()) {
            (Some(a), Some(b)) if a == b => format!("host {} of {}", a + 1, all.len()),
            (Some(a), Some(b)) => format!("hosts {}–{} of {}", a + 1, b + 1, all.len()),
            _ => return format!("{block} ({} hosts)", all.len()),
        };
        format!("{block} on {names} ({place})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(hosts: &[&str]) -> Blocks {
        let mut instances = Vec::new();
        for step in ["swap", "check"] {
            for h in hosts {
                instances.push((format!("{step}@{h}"), "rollout".to_string()));
            }
        }
        Blocks::new(instances)
    }

    #[test]
    fn a_block_is_one_line_naming_its_hosts_now_and_where_they_are() {
        let mut b = blocks(&["web1", "web3", "web2"]);
        assert!(b.is_block("rollout") && !b.is_block("swap@web1"));
        assert_eq!(b.block_of("check@web2"), Some("rollout"));
        assert_eq!(b.host_count("rollout"), 3);
        b.started("rollout", "swap@web3");
        assert_eq!(b.prefix("rollout"), "rollout on web3 (host 2 of 3)");
        assert_eq!(b.finished("rollout", "swap@web3"), 0);
        b.started("rollout", "check@web3");
        b.started("rollout", "swap@web2");
        assert_eq!(b.running("rollout"), 2);
        assert_eq!(
            b.prefix("rollout"),
            "rollout on web3, web2 (hosts 2–3 of 3)"
        );
        let hosts: Vec<String> = (1..=100).map(|i| format!("h{i}")).collect();
        let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let mut b = blocks(&names);
        for i in 11..=20 {
            b.started("rollout", &format!("swap@h{i}"));
        }
        assert_eq!(
            b.prefix("rollout"),
            "rollout on 10 hosts (hosts 11–20 of 100)"
        );
    }
}
