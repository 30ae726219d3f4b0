package sandbox

import (
	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// denied are the system calls a function never needs and a container
// runtime's default profile refuses: they change the kernel or the
// machine, manipulate mounts and namespaces, or reach into other
// processes. Everything else is allowed, so runtimes keep working unchanged.
var denied = []string{
	// Mounts and the root.
	"mount", "umount2", "pivot_root", "chroot", "mount_setattr",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
	// Namespaces.
	"unshare", "setns",
	// Other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// The kernel and the machine.
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime",
	"clock_adjtime", "adjtimex", "syslog", "iopl", "ioperm", "quotactl",
	"lookup_dcookie", "vhangup",
	// Interfaces a container profile keeps out for their attack surface.
	"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
	"open_by_handle_at", "name_to_handle_at", "uselib", "ustat", "sysfs",
	"nfsservctl", "get_kernel_syms", "query_module", "create_module",
	"fanotify_init",
}

// unimplemented answer ENOSYS rather than EPERM, so that libraries fall
// back to the older interface: glibc from clone3 to clone (whose namespace
// flags the filter can inspect, clone3's it cannot), libuv from io_uring
// to its thread pool (CRIU cannot dump an io_uring either).
var unimplemented = []string{"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}

// namespaceFlags are the clone flags that would give the function new
// namespaces, where it could be root.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Policy is the seccomp policy a sandboxed function runs under.
func Policy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: denied},
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: unimplemented},
			// A clone that sets any namespace flag (BitsSet tests arg&value != 0).
			{Action: seccomp.ActionErrno, NamesWithCondtions: []seccomp.NameWithConditions{{
				Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
			}}},
		},
	}
}
