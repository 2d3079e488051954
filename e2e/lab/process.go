package lab

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// Descendants lists every live process below pid, read from /proc.
func Descendants(pid int) ([]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	children := map[int][]int{}
	for _, path := range stats {
		st, err := readProcStat(path)
		if err != nil {
			continue // The process exited meanwhile.
		}
		children[st.ppid] = append(children[st.ppid], st.pid)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// ResidentBytes sums the resident set size of pids, read from /proc.
// Processes that have exited count as zero.
func ResidentBytes(pids ...int) uint64 {
	var total uint64
	for _, p := range pids {
		st, err := readProcStat(fmt.Sprintf("/proc/%d/stat", p))
		if err == nil {
			total += st.rssPages * uint64(os.Getpagesize())
		}
	}
	return total
}

// PeakResidentBytes is the peak resident set size of pid (VmHWM), read
// from /proc; zero if the process is gone.
func PeakResidentBytes(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

// ListeningAddrs lists the TCP addresses (ip:port) pid listens on, read
// from /proc: its socket inodes matched against /proc/net/tcp and tcp6.
func ListeningAddrs(pid int) ([]string, error) {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		return nil, fmt.Errorf("listing the sockets of process %d: %w", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil {
			if inode, ok := strings.CutPrefix(link, "socket:["); ok {
				inodes[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	var addrs []string
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return nil, fmt.Errorf("reading the TCP sockets of process %d: %w", pid, err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			const listen = "0A"
			if len(f) < 10 || f[3] != listen || !inodes[f[9]] {
				continue
			}
			addr, err := procNetAddr(f[1])
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, addr)
		}
	}
	return addrs, nil
}

// procNetAddr decodes /proc/net/tcp's "0100007F:1F90": the address as
// 32-bit words in host (little-endian) order, the port in hex.
func procNetAddr(s string) (string, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexIP)
	port, perr := strconv.ParseUint(hexPort, 16, 16)
	if !ok || err != nil || perr != nil || len(raw)%4 != 0 {
		return "", fmt.Errorf("unexpected socket address %q in /proc/net", s)
	}
	ip := make(net.IP, len(raw))
	for w := 0; w < len(raw); w += 4 {
		for b := range 4 {
			ip[w+b] = raw[w+3-b]
		}
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10)), nil
}

type procStat struct {
	pid, ppid int
	state     string
	rssPages  uint64
}

// readProcStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so the fixed fields are counted from its last ')'.
func readProcStat(path string) (procStat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	head := strings.Fields(s[:max(end, 0)])
	fields := strings.Fields(s[end+1:])
	if end < 0 || len(head) == 0 || len(fields) < 22 {
		return procStat{}, fmt.Errorf("unexpected format of %s", path)
	}
	var st procStat
	st.pid, _ = strconv.Atoi(head[0])
	st.ppid, _ = strconv.Atoi(fields[1])
	st.state = fields[0]
	st.rssPages, _ = strconv.ParseUint(fields[21], 10, 64)
	return st, nil
}
