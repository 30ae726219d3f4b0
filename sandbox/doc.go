// Package sandbox confines a local worker's function the way a container
// runtime would, around the agent that supervises it: a private root
// entered with pivot_root (the host's runtimes read-only, the function's
// directory read-only at FunctionPath, a sized /tmp, a minimal /dev, a
// fresh /proc), and a function process with an unprivileged uid and gid,
// no capabilities, no_new_privs and a seccomp filter. The agent stays root
// in the same namespaces, so CRIU can checkpoint and restore the function,
// and a restored function gets its restrictions back from the image.
//
// Limits are the worker's cgroup (package local), and egress is
// sandbox/network.
package sandbox
