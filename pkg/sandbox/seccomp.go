package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// deniedSyscalls are allowed by Docker's default seccomp profile
// (github.com/moby/profiles/seccomp v0.1.0) on kernels from 4.8 on, but a
// sandboxed program has no use for them. They let a process read and
// change the memory of another process of the same user, such as the
// container's init process.
var deniedSyscalls = []string{"ptrace", "process_vm_readv", "process_vm_writev"}

// seccompProfile returns Docker's default seccomp profile (as shipped in
// github.com/moby/profiles/seccomp) without deniedSyscalls, as JSON for
// the "seccomp=" security option. A denied call fails with EPERM, the
// profile's default error.
//
// Under runsc the clone3 rule becomes an allow rule. Docker's profile makes
// clone3 fail with ENOSYS, so that glibc falls back to clone, whose flags
// seccomp can check. gVisor (Debian's runsc 20221219) returns EPERM for
// that rule instead, which makes every thread creation fail, while its own
// clone3 returns ENOSYS. NOTE: a later gVisor that implements clone3 would
// then let a program create namespaces inside the sandbox.
func seccompProfile(runtime string) string {
	profile := seccomp.DefaultProfile()
	if runtime == "runsc" {
		for _, rule := range profile.Syscalls {
			if slices.Equal(rule.Names, []string{"clone3"}) && rule.Action == specs.ActErrno {
				rule.Action, rule.ErrnoRet = specs.ActAllow, nil
			}
		}
	}
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
		// json.Marshal fails only on channels, functions, cycles and
		// non-finite floats, and the profile's types contain none of them.
		panic(fmt.Sprintf("encode seccomp profile: %v", err))
	}
	return string(data)
}

// CheckRuntime returns an error when the configured runtime is not
// registered with the engine, or when runsc is registered without
// --oci-seccomp: gVisor then ignores the seccomp profile, and a program
// can create user namespaces and raw sockets inside the sandbox.
func (r *Runner) CheckRuntime(ctx context.Context) error {
	if r.config.Runtime == "" {
		return nil
	}
	info, err := r.docker.Info(ctx)
	if err != nil {
		return platformError("read engine info", err)
	}
	runtime, ok := info.Runtimes[r.config.Runtime]
	if !ok {
		return fmt.Errorf("the engine has no runtime %q registered; register it in /etc/docker/daemon.json (docs/security.md)",
			r.config.Runtime)
	}
	if r.config.Runtime == "runsc" && !slices.Contains(runtime.Args, "--oci-seccomp") {
		return errors.New("the engine runs runsc without --oci-seccomp, so gVisor would ignore the sandbox's seccomp profile. " +
			"Add it to the runtimeArgs of runsc in /etc/docker/daemon.json (docs/security.md)")
	}
	return nil
}
