package sandbox

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
)

// deniedSyscalls are allowed by Docker's default seccomp profile on
// kernels from 4.8 on, but a sandboxed program has no use for them. They
// let a process read and change the memory of another process of the same
// user, such as the container's init process.
var deniedSyscalls = []string{"ptrace", "process_vm_readv", "process_vm_writev"}

// seccompProfile returns Docker's default seccomp profile (as shipped in
// github.com/moby/profiles/seccomp) without deniedSyscalls, as JSON for
// the "seccomp=" security option. A denied call fails with EPERM, the
// profile's default error.
func seccompProfile() string {
	profile := seccomp.DefaultProfile()
	for _, rule := range profile.Syscalls {
		// Rules that depend on CAP_SYS_PTRACE never apply, because the
		// sandbox drops every capability.
		if rule.Includes != nil && len(rule.Includes.Caps) > 0 {
			continue
		}
		rule.Names = slices.DeleteFunc(rule.Names, func(name string) bool {
			return slices.Contains(deniedSyscalls, name)
		})
	}
	profile.Syscalls = slices.DeleteFunc(profile.Syscalls, func(rule *seccomp.Syscall) bool {
		return len(rule.Names) == 0 && rule.Name == ""
	})
	data, err := json.Marshal(profile)
	if err != nil {
		// The profile is static data of plain types, so this cannot fail.
		panic(fmt.Sprintf("encode seccomp profile: %v", err))
	}
	return string(data)
}
