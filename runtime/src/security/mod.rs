//! What the child applies to itself just before `execve`: rlimits, capabilities, no_new_privs,
//! seccomp. Everything that allocates (compiling BPF, parsing names) happens before the fork/clone;
//! the `apply_*` functions only make system calls.
