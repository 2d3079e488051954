package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// childProcAttr makes a child die with the lab: the kernel sends SIGKILL
// when the parent goes away, even if the parent was killed with SIGKILL and
// never ran its cleanup. Setpgid lets Stop signal the whole group.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// deathSignalWrapper writes a tiny script that execs binary under
// `setpriv --pdeathsig KILL`. envtest starts kube-apiserver and etcd itself
// and offers no hook for SysProcAttr, so the wrapper is how those children
// also die with the test binary. exec keeps the PID, so envtest's own
// Stop still signals the real server.
func deathSignalWrapper(dir, binary string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		// Without setpriv the lab still works; only orphan cleanup after a
		// SIGKILL of the test binary is lost.
		return binary, nil
	}
	path := filepath.Join(dir, filepath.Base(binary))
	script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", setpriv, binary)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("writing wrapper for %s: %w", binary, err)
	}
	return path, nil
}
