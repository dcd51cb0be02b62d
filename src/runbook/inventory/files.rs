//! `group_vars/` and `host_vars/` beside an inventory file.
