package issuer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The benchmark counts every cost from the server that pays it: API calls
// from the API server's own metrics, Vault requests from a Vault audit
// device, token leases from Vault's lease store. None of them trusts
// meshtrust's own counters.

// vaultReviewerFlowSchema is the API server's priority-and-fairness flow
// schema that the lab's Vault reviewer (a kube-system service account, see
// lab.ConfigureVaultKubernetesAuth) falls into, and nothing else in this
// lab does: every request it counts is a TokenReview Vault sent on behalf
// of a login.
const vaultReviewerFlowSchema = "kube-system-service-accounts"

// apiSnapshot is the API server's request counters: "VERB resource" (with
// "/subresource") from apiserver_request_total, and "flowschema NAME" from
// apiserver_flowcontrol_dispatched_requests_total.
type apiSnapshot map[string]float64

func (e *env) apiSnapshot(b *testing.B) apiSnapshot {
	b.Helper()
	raw, err := e.cluster.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	out := apiSnapshot{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		// Thousands of histogram lines: parse only the two counters.
		if !strings.HasPrefix(line, "apiserver_request_total{") && !strings.HasPrefix(line, "apiserver_flowcontrol_dispatched_requests_total{") {
			continue
		}
		name, labels, value, ok := parseSample(line)
		if !ok {
			continue
		}
		switch name {
		case "apiserver_request_total":
			key := labels["verb"] + " " + labels["resource"]
			if labels["subresource"] != "" {
				key += "/" + labels["subresource"]
			}
			out[key] += value
		case "apiserver_flowcontrol_dispatched_requests_total":
			out["flowschema "+labels["flow_schema"]] += value
		}
	}
	return out
}

// parseSample splits one line of the Prometheus text format. Label values
// here never hold commas or escaped quotes.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	open := strings.IndexByte(line, '{')
	end := strings.LastIndex(line, "} ")
	if open <= 0 || end < open || strings.HasPrefix(line, "#") {
		return "", nil, 0, false
	}
	labels = map[string]string{}
	for kv := range strings.SplitSeq(line[open+1:end], ",") {
		k, v, _ := strings.Cut(kv, "=")
		labels[k] = strings.Trim(v, `"`)
	}
	value, err := strconv.ParseFloat(strings.TrimSpace(line[end+2:]), 64)
	return line[:open], labels, value, err == nil
}

// isWrite says whether a request_total key is a write. The API server
// reports a server-side apply as APPLY.
func isWrite(key string) bool {
	verb, _, _ := strings.Cut(key, " ")
	switch verb {
	case "POST", "PUT", "PATCH", "APPLY", "DELETE":
		return true
	}
	return false
}

// sub is s minus before, dropping what did not grow.
func (s apiSnapshot) sub(before apiSnapshot) apiSnapshot {
	out := apiSnapshot{}
	for k, v := range s {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// writes is the total of the write counters.
func (s apiSnapshot) writes() float64 {
	var n float64
	for k, v := range s {
		if isWrite(k) {
			n += v
		}
	}
	return n
}

// settle waits until the API server has counted no new write for a
// second, so that writes made after the last request was Ready (events
// are sent in the background) are counted with the path that caused them.
func (e *env) settle(b *testing.B) apiSnapshot {
	b.Helper()
	last := e.apiSnapshot(b)
	stableSince := time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond) // polling interval
		cur := e.apiSnapshot(b)
		if cur.sub(last).writes() > 0 {
			last, stableSince = cur, time.Now()
			continue
		}
		if time.Since(stableSince) >= time.Second {
			return cur
		}
	}
	b.Logf("API server writes still counting 30 s after the last request was Ready")
	return last
}

// eventSources counts the events about the path's requests (named
// prefix-N) by "reporting controller: reason", repeats included.
func (e *env) eventSources(b *testing.B, prefix string) map[string]int {
	b.Helper()
	var list eventsv1.EventList
	if err := e.client.List(context.Background(), &list, client.InNamespace(benchNS)); err != nil {
		b.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range list.Items {
		if ev.Regarding.Kind != "CertificateRequest" || !strings.HasPrefix(ev.Regarding.Name, prefix+"-") {
			continue
		}
		source := ev.ReportingController
		if source == "" {
			source = ev.DeprecatedSource.Component
		}
		n := 1
		if ev.Series != nil {
			n = int(ev.Series.Count)
		} else if ev.DeprecatedCount > 1 {
			n = int(ev.DeprecatedCount)
		}
		out[source+": "+ev.Reason] += n
	}
	return out
}

// vaultAudit is a file audit device on the lab's Vault: every request
// Vault's core handles is one line of type "request" (values HMAC'd, so
// no token or key is in it). Vault answers a few endpoints, such as
// sys/health, outside its core; they are not audited and not counted.
type vaultAudit struct {
	path string
}

func (e *env) enableVaultAudit(b *testing.B) *vaultAudit {
	b.Helper()
	a := &vaultAudit{path: filepath.Join(e.lab.Dir, "vault-audit.log")}
	if err := e.vault.Sys().EnableAuditWithOptions("bench", &vaultapi.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": a.path}}); err != nil {
		b.Fatal(err)
	}
	return a
}

// close removes the device and its file, which grows by some 2 KiB a
// request; it must run while Vault is still up.
func (a *vaultAudit) close(b *testing.B, vc *vaultapi.Client) {
	if err := vc.Sys().DisableAudit("bench"); err != nil {
		b.Logf("disabling the Vault audit device: %v", err)
	}
	_ = os.Remove(a.path)
}

func (a *vaultAudit) offset(b *testing.B) int64 {
	b.Helper()
	fi, err := os.Stat(a.path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// requestsSince counts the audited requests after offset by "operation
// path", leaving out the benchmark's own (root token) reads, and the TCP
// connections they came on (distinct client address and port).
func (a *vaultAudit) requestsSince(b *testing.B, offset int64) (requests map[string]int, conns int) {
	b.Helper()
	f, err := os.Open(a.path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		b.Fatal(err)
	}
	out := map[string]int{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var entry struct {
			Type string `json:"type"`
			Auth struct {
				Policies []string `json:"policies"`
			} `json:"auth"`
			Request struct {
				Operation     string `json:"operation"`
				Path          string `json:"path"`
				RemoteAddress string `json:"remote_address"`
				RemotePort    int    `json:"remote_port"`
			} `json:"request"`
		}
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			b.Fatalf("parsing Vault audit log %s: %v", a.path, err)
		}
		if entry.Type != "request" || slices.Contains(entry.Auth.Policies, "root") {
			continue
		}
		out[entry.Request.Operation+" "+entry.Request.Path]++
		seen[fmt.Sprintf("%s:%d", entry.Request.RemoteAddress, entry.Request.RemotePort)] = true
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return out, len(seen)
}

// logins counts the login requests among audited ones.
func logins(requests map[string]int) int {
	n := 0
	for k, v := range requests {
		_, path, _ := strings.Cut(k, " ")
		if strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login") {
			n += v
		}
	}
	return n
}

// tokenLeases counts the live leases of tokens from auth methods, from
// Vault's lease store (sys/leases/lookup): each login adds one until it
// is revoked or expires.
func (e *env) tokenLeases(b *testing.B) int {
	b.Helper()
	var count func(prefix string) int
	count = func(prefix string) int {
		s, err := e.vault.Logical().List("sys/leases/lookup/" + prefix)
		if err != nil {
			b.Fatal(err)
		}
		if s == nil {
			return 0
		}
		keys, _ := s.Data["keys"].([]any)
		n := 0
		for _, k := range keys {
			if ks, _ := k.(string); strings.HasSuffix(ks, "/") {
				n += count(prefix + ks)
			} else {
				n++
			}
		}
		return n
	}
	return count("auth/")
}

// topCounts formats counts per request, largest first, leaving out what
// is under 0.01 per request.
func topCounts[V int | float64](counts map[string]V, per float64) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		if v := float64(counts[k]) / per; v >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// benchProcess names the benchmark's own process in a cpuSnapshot: it
// hosts cert-manager's controllers, meshtrust's issuer, the zero-work
// issuer and the harness, which /proc cannot tell apart.
const benchProcess = "in-process controllers"

// cpuSnapshot is the CPU time (user and system, seconds) used so far by
// this process and by each lab server it started (Vault, kube-apiserver,
// etcd), by command name: on a shared 2-core machine, what one server
// burns the others cannot use.
type cpuSnapshot map[string]float64

func cpuNow(b *testing.B) cpuSnapshot {
	b.Helper()
	self := os.Getpid()
	out := cpuSnapshot{}
	if _, _, t, ok := procStat(self); ok {
		out[benchProcess] = t
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		if comm, ppid, t, ok := procStat(pid); ok && ppid == self {
			out[comm] += t
		}
	}
	return out
}

// procStat reads a process's command name, parent and CPU seconds from
// /proc/PID/stat. Linux reports CPU time in USER_HZ, 100 per second on
// every architecture Go runs the lab on.
func procStat(pid int) (comm string, ppid int, seconds float64, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	// After the command: state, ppid, ... utime is field 14, stime 15.
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return s[open+1 : end], ppid, (utime + stime) / 100, true
}

func (s cpuSnapshot) sub(before cpuSnapshot) cpuSnapshot {
	out := cpuSnapshot{}
	for k, v := range s {
		out[k] = v - before[k]
	}
	return out
}
