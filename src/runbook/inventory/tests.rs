//! Tests of inventory reading.

use super::*;

#[test]
fn ini_hosts_groups_children_vars_and_ranges() {
    let inv = parse(
        "hosts",
        "lone ansible_host=10.0.0.9\n[web]\nweb[1:2] ansible_port=2201\n[db]\ndb1 ansible_host=10.0.0.20 ansible_user='pg admin'\n[prod:children]\nweb\ndb\n[prod:vars]\nansible_user=deploy\nansible_ssh_private_key_file=~/.ssh/k\n",
    )
    .unwrap();
    assert_eq!(inv.groups["web"], ["web1", "web2"]);
    assert_eq!(inv.groups["prod"], ["web1", "web2", "db1"]);
    assert_eq!(inv.groups["ungrouped"], ["lone"]);
    assert_eq!(inv.groups["all"].len(), 4);
    assert_eq!(inv.hosts["web1"].user.as_deref(), Some("deploy"));
    assert_eq!(inv.hosts["web2"].port.as_deref(), Some("2201"));
    assert_eq!(inv.hosts["db1"].user.as_deref(), Some("pg admin"));
    assert_eq!(inv.hosts["lone"].user, None);
    assert_eq!(inv.hosts["db1"].identity_file.as_deref(), Some("~/.ssh/k"));
}

#[test]
fn ssh_by_its_full_plugin_name_is_plain_ssh() {
    let inv = parse(
        "i.ini",
        "a ansible_connection=ansible.builtin.ssh\nb ansible_connection=ansible.legacy.ssh\nc ansible_connection=ansible.builtin.local\n",
    )
    .unwrap();
    assert_eq!(inv.hosts["a"].refused(), None);
    assert_eq!(inv.hosts["b"].refused(), None);
    assert_eq!(
        inv.hosts["c"].refused().as_deref(),
        Some("`ansible_connection=ansible.builtin.local`")
    );
}

#[test]
fn yaml_inventory() {
    let inv = parse(
        "inv.yml",
        "all:\n  vars: { ansible_user: ops }\n  hosts:\n    solo: { ansible_host: 10.1.1.1 }\n  children:\n    web:\n      hosts:\n        web01: { ansible_host: 10.0.0.1, ansible_port: 2222 }\n        web02:\n    db:\n      hosts: { db01: }\n      vars: { ansible_user: postgres }\n",
    )
    .unwrap();
    assert_eq!(inv.groups["web"], ["web01", "web02"]);
    assert_eq!(inv.groups["all"], ["solo", "web01", "web02", "db01"]);
    assert_eq!(inv.hosts["web01"].port.as_deref(), Some("2222"));
    assert_eq!(inv.hosts["web02"].user.as_deref(), Some("ops"));
    assert_eq!(inv.hosts["db01"].user.as_deref(), Some("postgres"));
}

#[test]
fn bad_inventories_say_where() {
    let e = parse("hosts", "[web\nweb1\n").unwrap_err();
    assert!(e.starts_with("line 1:"), "{e}");
    let e = parse("hosts", "[web]\nweb1 port\n").unwrap_err();
    assert!(e.contains("line 2") && e.contains("key=value"), "{e}");
    let e = parse("hosts", "[a:children]\nb\n[b:children]\na\n").unwrap_err();
    assert!(e.contains("contain each other"), "{e}");
    assert!(parse("x.yml", "all: [1, 2]\n").is_err());
}

#[test]
fn a_range_with_a_stride_takes_every_nth_host() {
    let inv = parse("hosts", "[web]\nweb[01:06:2]\n").unwrap();
    assert_eq!(inv.groups["web"], ["web01", "web03", "web05"]);
    assert!(parse("hosts", "[web]\nweb[1:6:0]\n").is_err());
    // Two ranges in one name multiply: bounded, not a hang.
    let e = parse("hosts", "[web]\nw[0:99999]x[0:99999]\n").unwrap_err();
    assert!(e.contains("100,000"), "{e}");
}

#[test]
fn a_host_variable_that_would_read_as_an_ssh_option_is_refused() {
    for line in [
        "h1 ansible_host=-oProxyCommand=touch/tmp/x",
        "h1 ansible_user=-oProxyCommand=x",
        "h1 ansible_ssh_private_key_file=-F/tmp/cfg",
    ] {
        let e = parse("hosts", &format!("[web]\n{line}\n")).unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("`-`"), "{e}");
    }
    let e = parse("hosts", "[web:vars]\nansible_host=-oX=y\n").unwrap_err();
    assert!(e.starts_with("line 2:"), "{e}");
    let e = parse(
        "i.yml",
        "all:\n  hosts:\n    h1: { ansible_user: -lroot }\n",
    )
    .unwrap_err();
    assert!(e.contains("`-`"), "{e}");
}

#[test]
fn ini_host_port_form_and_inline_comments() {
    let inv = parse(
        "hosts",
        "[web]\nw1 ansible_host=10.0.0.1 # primary\nw2:2222 ansible_host=10.0.0.2\nw3:2200 ansible_port=2201\n[web:vars]\nansible_user=\"deploy\" # who\n",
    )
    .unwrap();
    assert_eq!(inv.groups["web"], ["w1", "w2", "w3"]);
    assert_eq!(inv.hosts["w1"].address.as_deref(), Some("10.0.0.1"));
    assert_eq!(inv.hosts["w2"].port.as_deref(), Some("2222"));
    assert_eq!(inv.hosts["w3"].port.as_deref(), Some("2201"));
    assert_eq!(inv.hosts["w1"].user.as_deref(), Some("deploy"));
}

#[test]
fn a_child_groups_vars_win_over_its_parents_as_in_ansible() {
    // The parent's vars come after the child's in the file.
    let inv = parse(
        "hosts",
        "[web]\nw1\n[web:vars]\nansible_user=www\n[prod:children]\nweb\n[prod:vars]\nansible_user=deploy\nansible_port=2200\n[db]\nd1\n[prod:children]\ndb\n",
    )
    .unwrap();
    assert_eq!(inv.hosts["w1"].user.as_deref(), Some("www"));
    assert_eq!(inv.hosts["w1"].port.as_deref(), Some("2200"));
    assert_eq!(inv.hosts["d1"].user.as_deref(), Some("deploy"));
    // And in YAML, a parent listed after its children.
    let inv = parse(
        "i.yml",
        "all:\n  children:\n    prod:\n      children:\n        web:\n          hosts: { w1: }\n          vars: { ansible_user: www }\n      vars: { ansible_user: deploy }\n  vars: { ansible_user: nobody }\n",
    )
    .unwrap();
    assert_eq!(inv.hosts["w1"].user.as_deref(), Some("www"));
}

#[test]
fn host_names_a_shell_or_ssh_would_read_more_into_are_refused() {
    for name in [
        "web$(touch x)",
        "w;rm",
        "-oProxyCommand",
        "a`id`",
        "w'1",
        "a/b",
        "w@1",
    ] {
        let e = parse("hosts", &format!("[web]\n\"{name}\"\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{name}: {e}");
    }
    let e = parse("i.yml", "all:\n  hosts:\n    \"a;b\":\n").unwrap_err();
    assert!(e.contains("`a;b`"), "{e}");
    let inv = parse("hosts", "[web]\nweb-1.example.com\nfe80::1\n10.0.0.1\n").unwrap();
    assert_eq!(inv.groups["web"].len(), 3);
}

#[test]
fn globs() {
    assert!(glob_match("web*", "web12"));
    assert!(glob_match("w?b1", "web1"));
    assert!(!glob_match("web*", "db1"));
    assert!(glob_match("*", ""));
    assert!(!glob_match("a*b", "acbd"));
}

#[test]
fn ini_read_as_ansible_reads_it() {
    // Values with spaces in `[g:vars]`, a comment after a section header,
    // non-ASCII names, INI text in a file named `.yml`.
    let text =
        "[etcd]  # 3 nodes\nétcd-1 ansible_host=10.0.0.1\n[etcd:vars]\nansible_user=deploy user\n";
    for name in ["hosts", "hosts.yml"] {
        let inv = parse(name, text).unwrap();
        assert_eq!(
            inv.hosts["étcd-1"].user.as_deref(),
            Some("deploy user"),
            "{name}"
        );
        assert_eq!(inv.groups["etcd"], vec!["étcd-1"]);
    }
    assert!(parse("hosts", "[web] web1\n").is_err());
}

#[test]
fn ungrouped_holds_the_hosts_in_no_other_group() {
    let inv = parse("hosts", "solo\nboth\n[web]\nboth\n").unwrap();
    assert_eq!(inv.groups["ungrouped"], vec!["solo"]);
    let inv = parse(
        "i.yml",
        "all:\n  hosts:\n    a:\n  children:\n    web:\n      hosts: { b: }\n",
    )
    .unwrap();
    assert_eq!(inv.groups["ungrouped"], vec!["a"]);
}

#[test]
fn undefined_groups_are_refused_as_ansible_refuses_them() {
    let e = parse("hosts", "[prod:children]\nweb\n").unwrap_err();
    assert!(e.contains("line 2") && e.contains("`web`"), "{e}");
    let e = parse("hosts", "[db:vars]\nx=1\n").unwrap_err();
    assert!(e.contains("line 1") && e.contains("db"), "{e}");
    // Defined later is fine, as for Ansible.
    assert!(parse(
        "hosts",
        "[prod:children]\nweb\n[web]\nw1\n[all:vars]\nx=1\n"
    )
    .is_ok());
}

#[test]
fn jinja_values_render_from_the_inventorys_own_variables() {
    let inv = parse(
        "hosts",
        "[web]\nw1 ansible_host=\"{{ prefix }}.11\" ansible_user=\"{{ who }}\" note=\"{{ inventory_hostname }}!\"\nw2 ansible_host=\"{{ nowhere }}\"\n[web:vars]\nprefix=10.0.0\nwho=deploy\n",
    )
    .unwrap();
    assert_eq!(inv.hosts["w1"].address.as_deref(), Some("10.0.0.11"));
    assert_eq!(inv.hosts["w1"].user.as_deref(), Some("deploy"));
    assert_eq!(inv.hosts["w1"].vars["note"], "w1!");
    assert!(inv.hosts["w1"].refused().is_none());
    // Undefined: refused where used, never reached at a wrong address.
    let why = inv.hosts["w2"].refused().unwrap();
    assert!(why.contains("nowhere"), "{why}");
    assert_eq!(inv.hosts["w2"].address.as_deref(), Some("w2"));
}

#[test]
fn yaml_hosts_ansible_refuses_are_refused() {
    let e = parse("i.yml", "all:\n  hosts:\n    cloud1: my_backup.cloud.com\n").unwrap_err();
    assert!(e.contains("cloud1") && e.contains("not a mapping"), "{e}");
    let e = parse("i.yml", "all:\n  hosts:\n    123:\n").unwrap_err();
    assert!(e.contains("123") && e.contains("quote"), "{e}");
    assert!(parse("i.yml", "all:\n  hosts:\n    \"123\":\n").is_ok());
}
