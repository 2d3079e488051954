package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStopLeavesNoProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := Start(ctx, Options{Clusters: []string{"c1"}, NoCertManager: true})
	if err != nil {
		t.Fatal(err)
	}
	pids := descendants(t, os.Getpid())
	if len(pids) < 3 {
		l.Stop()
		t.Fatalf("expected vault, etcd and kube-apiserver among the lab's processes, found PIDs %v", pids)
	}
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, pids)
}

// TestKilledTestLeavesNoProcess kills a test binary that runs a lab (with
// an istiod) with SIGKILL, so no cleanup of its own runs, and checks the
// kernel took its servers down with it.
func TestKilledTestLeavesNoProcess(t *testing.T) {
	if os.Getenv("MESHTRUST_LAB_CHILD") != "" {
		runChildLab(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledTestLeavesNoProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "MESHTRUST_LAB_CHILD="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pids, err := readPIDs(stdout)
	names := commandNames(pids)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vault", "etcd", "kube-apiserver", "istiod"} {
		if !slices.Contains(names, want) {
			t.Fatalf("expected %s among the child's processes, found %v (PIDs %v)", want, names, pids)
		}
	}
	assertGone(t, pids)
}

func runChildLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := Start(ctx, Options{Clusters: []string{"c1"}, NoCertManager: true, Istiod: true, Dir: os.Getenv("MESHTRUST_LAB_CHILD")})
	if err != nil {
		fmt.Println("ERROR", err)
		t.Fatal(err)
	}
	defer l.Stop()
	pids := descendants(t, os.Getpid())
	strs := make([]string, len(pids))
	for i, p := range pids {
		strs[i] = strconv.Itoa(p)
	}
	fmt.Println("PIDS", strings.Join(strs, " "))
	<-ctx.Done() // The parent kills this process long before.
}

func readPIDs(stdout io.Reader) ([]int, error) {
	scanner := bufio.NewScanner(stdout)
	for scanner.Scan() {
		line := scanner.Text()
		if rest, ok := strings.CutPrefix(line, "ERROR "); ok {
			return nil, errors.New("child lab: " + rest)
		}
		if rest, ok := strings.CutPrefix(line, "PIDS "); ok {
			var pids []int
			for _, f := range strings.Fields(rest) {
				p, err := strconv.Atoi(f)
				if err != nil {
					return nil, err
				}
				pids = append(pids, p)
			}
			return pids, nil
		}
	}
	return nil, fmt.Errorf("child exited without reporting its PIDs: %v", scanner.Err())
}

// commandNames reads each process's command name.
func commandNames(pids []int) []string {
	var names []string
	for _, p := range pids {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); err == nil {
			names = append(names, strings.TrimSpace(string(comm)))
		}
	}
	return names
}

func descendants(t *testing.T, pid int) []int {
	t.Helper()
	pids, err := Descendants(pid)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// assertGone waits until none of pids is alive. A zombie counts as gone:
// it no longer runs, and reaping it is its new parent's business.
func assertGone(t *testing.T, pids []int) {
	t.Helper()
	Eventually(t, 30*time.Second, "lab processes to exit", func(context.Context) error {
		for _, p := range pids {
			st, err := readProcStat(fmt.Sprintf("/proc/%d/stat", p))
			if err == nil && st.state != "Z" {
				return fmt.Errorf("process %d is still running (state %s)", p, st.state)
			}
		}
		return nil
	})
}
