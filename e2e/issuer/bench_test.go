package issuer_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	vaultapi "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

const (
	benchRequests = 200
	// benchWorkers matches cert-manager's default of 5 workers per
	// controller; the floor path uses as many goroutines.
	benchWorkers = 5
	benchNS      = "team-a"
	// benchRounds is how many times each iteration runs every path, after
	// one round that warms the lab up and is not counted. Each round
	// starts one group of paths later, and runs the paths of a group in
	// the opposite order of the round before, so that load from other
	// work on the machine falls on all paths alike and a path always runs
	// next to its ceiling, as often before it as after. Figures are
	// medians over the rounds, ratios medians of each round's ratio.
	benchRounds = 5
)

// benchPath is one way of signing the 200 CSRs.
type benchPath struct {
	name string
	// ceiling names the zero-work path this one is measured against.
	ceiling string
	run     func(b *testing.B, run int) pathResult
}

// BenchmarkIssuer signs the same 200 CSRs along each of these paths, with
// the same Vault and Kubernetes auth wherever Vault is involved:
//
//   - meshtrust: CertificateRequests to a VaultIssuer, leaves through
//     <mount>/sign/<role>, intermediates through sign-intermediate;
//   - cert-manager's built-in Vault issuer (its
//     certificaterequests-issuer-vault controller), leaves;
//   - the ceiling: a zero-work issuer-lib issuer that returns a pre-made
//     certificate at once (benchzero_test.go), for leaves, for
//     intermediates, and for leaves without issuer-lib's Initializing
//     status apply;
//   - the floor: direct Vault calls with one token, no Kubernetes at all.
//
// It prints one table: throughput, meshtrust/ceiling, API writes per
// request (from the API server's metrics), latency from approval to Ready,
// and for 200 requests the Vault logins and token leases (from Vault), the
// Vault requests (from a Vault audit device) and the TokenReviews Vault
// sent (from the API server); then where each write and Vault request
// comes from. It asserts nothing. Run it with -benchtime=1x: each
// iteration is benchRounds rounds of every path, after one warm-up round.
func BenchmarkIssuer(b *testing.B) {
	ctx := context.Background()
	loadBefore := loadAverage()
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	e, err := startEnv(startCtx, lab.Options{Vault: lab.VaultDev, ExtraCertManagerControllers: []string{"certificaterequests-issuer-vault"}}, 5*time.Minute)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer e.stop()
	z := e.startZeroIssuer(b)
	defer z.stop()
	audit := e.enableVaultAudit(b)
	defer audit.close(b, e.vault)

	leafCSRs := make([][]byte, benchRequests)
	caCSRs := make([][]byte, benchRequests)
	for i := range benchRequests {
		leafCSRs[i] = pkitest.URICSR(b, pkitest.ECKey(b), "", fmt.Sprintf("spiffe://%s/ns/bench/sa/s%d", trustDomain, i))
		caCSRs[i] = pkitest.URICSR(b, pkitest.ECKey(b), fmt.Sprintf("east.mesh intermediate %d", i), "spiffe://"+trustDomain)
	}
	wcfg := *e.cluster.Config
	wcfg.QPS, wcfg.Burst = 1000, 2000
	wc, err := client.NewWithWatch(&wcfg, client.Options{Scheme: newScheme()})
	if err != nil {
		b.Fatal(err)
	}
	crs := func(label string, csrs [][]byte, isCA bool, issuer func(string) (cmmeta.IssuerReference, func()), labels map[string]string) func(*testing.B, int) pathResult {
		return func(b *testing.B, run int) pathResult {
			return e.benchCRs(b, wc, audit, fmt.Sprintf("%s-%d", label, run), csrs, isCA, issuer, labels)
		}
	}
	zero := func(intermediate bool) func(string) (cmmeta.IssuerReference, func()) {
		return func(name string) (cmmeta.IssuerReference, func()) { return z.issuer(b, name, intermediate) }
	}
	groups := [][]benchPath{{
		{name: "meshtrust leaf", ceiling: "zero-work leaf", run: crs("mt-leaf", leafCSRs, false, e.meshtrustIssuer(b), nil)},
		{name: "zero-work leaf", run: crs("zero-leaf", leafCSRs, false, zero(false), nil)},
		{name: "zero-work leaf, no Initializing", ceiling: "zero-work leaf", run: crs("zero-noinit", leafCSRs, false, zero(false), map[string]string{skipInitLabel: "true"})},
		{name: "cert-manager leaf", ceiling: "zero-work leaf", run: crs("cm-leaf", leafCSRs, false, e.certManagerIssuer(b), nil)},
	}, {
		{name: "floor leaf", run: func(b *testing.B, _ int) pathResult { return e.benchDirect(b, audit, leafCSRs, false) }},
	}, {
		{name: "meshtrust intermediate", ceiling: "zero-work intermediate", run: crs("mt-ca", caCSRs, true, e.meshtrustIssuer(b), nil)},
		{name: "zero-work intermediate", run: crs("zero-ca", caCSRs, true, zero(true), nil)},
	}, {
		{name: "floor intermediate", run: func(b *testing.B, _ int) pathResult { return e.benchDirect(b, audit, caCSRs, true) }},
	}}
	paths := slices.Concat(groups...)
	run := 0
	round := func(n int) map[string]pathResult {
		out := map[string]pathResult{}
		for k := range groups {
			g := slices.Clone(groups[(k+n)%len(groups)])
			if n%2 == 1 {
				slices.Reverse(g)
			}
			for _, p := range g {
				load := loadAverage()
				r := p.run(b, run)
				r.load, _, _ = strings.Cut(load, " ")
				out[p.name] = r
				run++
			}
		}
		return out
	}
	round(0)

	b.ResetTimer()
	runs := map[string][]pathResult{}
	for range b.N {
		for n := range benchRounds {
			for name, r := range round(n) {
				runs[name] = append(runs[name], r)
			}
		}
	}
	b.StopTimer()

	s := summarize(paths, runs)
	printSummary(os.Stdout, paths, s, loadBefore, loadAverage())
	b.ReportMetric(s["meshtrust leaf"].rate, "meshtrust-leaf/s")
	b.ReportMetric(s["zero-work leaf"].rate, "ceiling-leaf/s")
	b.ReportMetric(s["meshtrust leaf"].ratio, "meshtrust/ceiling-leaf")
	b.ReportMetric(s["meshtrust intermediate"].ratio, "meshtrust/ceiling-ca")
	b.ReportMetric(s["cert-manager leaf"].rate, "certmanager-leaf/s")
	b.ReportMetric(s["meshtrust leaf"].writes, "meshtrust-writes/req")
}

// pathResult is one run of one path.
type pathResult struct {
	took time.Duration
	// created and approved are when the last request was created and
	// approved, from the start: stages every CertificateRequest path
	// shares, which bound what any issuer can reach.
	created, approved time.Duration
	// latencies are each request's time from approval to Ready, as the
	// benchmark's watch saw them.
	latencies []time.Duration
	// api is the API server's calls from the issuer being Ready until
	// writes settled after the last request; nil on the floor paths.
	api apiSnapshot
	// events counts events about the requests by source and reason.
	events map[string]int
	// vault is the audited Vault requests, the issuer's own set-up
	// included; reviews is the API server's calls in the same window.
	vault   map[string]int
	conns   int
	leases  int
	reviews apiSnapshot
	// cpu is the CPU time each process used from the start until the last
	// request was Ready; settle's scrapes of the API server's metrics are
	// not in it.
	cpu cpuSnapshot
	// load is the machine's 1-minute load average when the run started.
	load string
}

func (r pathResult) rate() float64 { return float64(benchRequests) / r.took.Seconds() }

// vaultBefore is what a path's Vault costs are measured from.
type vaultBefore struct {
	audit  int64
	leases int
	api    apiSnapshot
}

func (e *env) vaultBefore(b *testing.B, a *vaultAudit) vaultBefore {
	b.Helper()
	return vaultBefore{leases: e.tokenLeases(b), audit: a.offset(b), api: e.apiSnapshot(b)}
}

// vaultCosts fills r's Vault figures since before.
func (e *env) vaultCosts(b *testing.B, a *vaultAudit, before vaultBefore, r *pathResult) {
	b.Helper()
	r.reviews = e.apiSnapshot(b).sub(before.api)
	r.vault, r.conns = a.requestsSince(b, before.audit)
	r.leases = e.tokenLeases(b) - before.leases
}

// meshtrustIssuer makes new, Ready VaultIssuers.
func (e *env) meshtrustIssuer(b *testing.B) func(string) (cmmeta.IssuerReference, func()) {
	return func(name string) (cmmeta.IssuerReference, func()) {
		vi := &v1alpha1.VaultIssuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
			Spec:       e.spec(kubernetesAuth("team-a", "meshtrust"), trustDomain),
		}
		if err := e.client.Create(context.Background(), vi); err != nil {
			b.Fatal(err)
		}
		e.waitIssuer(b, vi, metav1.ConditionTrue, "")
		return issuerRef(vi.Name), func() { e.deleteIssuer(b, vi) }
	}
}

// certManagerIssuer makes new, Ready cert-manager Issuers of type vault
// using the same Vault role through Kubernetes auth.
func (e *env) certManagerIssuer(b *testing.B) func(string) (cmmeta.IssuerReference, func()) {
	return func(name string) (cmmeta.IssuerReference, func()) {
		iss := &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{Vault: &cmapi.VaultIssuer{
				Server: e.lab.Vault.Addr, Path: "pki/sign/" + leafRole,
				Auth: cmapi.VaultAuth{Kubernetes: &cmapi.VaultKubernetesAuth{
					Path: "/v1/auth/kubernetes", Role: "team-a",
					ServiceAccountRef: &cmapi.ServiceAccountRef{Name: issuerSA, TokenAudiences: []string{"meshtrust"}},
				}},
			}}},
		}
		if err := e.client.Create(context.Background(), iss); err != nil {
			b.Fatal(err)
		}
		eventually(b, 60*time.Second, "cert-manager vault Issuer Ready", func() (bool, string) {
			if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(iss), iss); err != nil {
				return false, err.Error()
			}
			for _, c := range iss.Status.Conditions {
				if c.Type == cmapi.IssuerConditionReady {
					return c.Status == cmmeta.ConditionTrue, c.Message
				}
			}
			return false, "no condition"
		})
		return cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: iss.Name}, func() { e.deleteIssuer(b, iss) }
	}
}

func (e *env) deleteIssuer(b *testing.B, obj client.Object) {
	if err := e.client.Delete(context.Background(), obj); err != nil {
		b.Error(err)
	}
}

// benchCRs times 200 CertificateRequests from the first create to the last
// Ready, watched rather than polled.
func (e *env) benchCRs(b *testing.B, wc client.WithWatch, audit *vaultAudit, label string, csrs [][]byte, isCA bool,
	issuer func(string) (cmmeta.IssuerReference, func()), labels map[string]string) pathResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := wc.Watch(ctx, &cmapi.CertificateRequestList{}, client.InNamespace(benchNS), client.MatchingLabels{"bench": label})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	// The issuer is created and Ready before the clock starts, for every
	// kind alike; its Vault costs still count, its API calls do not.
	vb := e.vaultBefore(b, audit)
	ref, deleteIssuer := issuer(label)
	callsBefore := e.apiSnapshot(b)
	cpuBefore := cpuNow(b)
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	createdAt := make(chan time.Duration, 1)
	for range benchWorkers {
		wg.Go(func() {
			for i := range jobs {
				cr := newCR(benchNS, fmt.Sprintf("%s-%d", label, i), ref, csrs[i], isCA, 30*time.Minute)
				cr.Labels = map[string]string{"bench": label}
				maps.Copy(cr.Labels, labels)
				if err := e.client.Create(ctx, cr); err != nil {
					b.Error(err)
				}
			}
		})
	}
	go func() {
		for i := range csrs {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		createdAt <- time.Since(start)
	}()
	approvedAt, readyAt := map[string]time.Duration{}, map[string]time.Duration{}
	var lastApproved time.Duration
	for len(readyAt) < len(csrs) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("%s: watch closed with %d of %d Ready", label, len(readyAt), len(csrs))
			}
			cr, isCR := ev.Object.(*cmapi.CertificateRequest)
			if !isCR || ev.Type == watch.Deleted {
				continue
			}
			now := time.Since(start)
			if _, seen := approvedAt[cr.Name]; !seen && crIs(cr, cmapi.CertificateRequestConditionApproved) {
				approvedAt[cr.Name], lastApproved = now, now
			}
			if c := crReady(cr); c != nil {
				switch _, seen := readyAt[cr.Name]; {
				case c.Status == cmmeta.ConditionTrue && !seen:
					readyAt[cr.Name] = now
				case c.Reason == cmapi.CertificateRequestReasonFailed:
					b.Fatalf("%s: %s failed: %s", label, cr.Name, c.Message)
				}
			}
		case <-ctx.Done():
			b.Fatalf("%s: timed out with %d of %d Ready", label, len(readyAt), len(csrs))
		}
	}
	res := pathResult{took: time.Since(start), created: <-createdAt, approved: lastApproved, cpu: cpuNow(b).sub(cpuBefore)}
	for name, t := range readyAt {
		res.latencies = append(res.latencies, t-approvedAt[name])
	}
	// Outside the timed window: the writes the requests caused after they
	// were Ready, then the clean-up, so later paths start alike.
	res.api = e.settle(b).sub(callsBefore)
	res.events = e.eventSources(b, label)
	e.vaultCosts(b, audit, vb, &res)
	if err := e.client.DeleteAllOf(context.Background(), &cmapi.CertificateRequest{}, client.InNamespace(benchNS), client.MatchingLabels{"bench": label}); err != nil {
		b.Fatal(err)
	}
	deleteIssuer()
	return res
}

// benchDirect signs the CSRs straight through Vault with one Kubernetes
// auth login, the same number of workers, and nothing else: the floor.
func (e *env) benchDirect(b *testing.B, audit *vaultAudit, csrs [][]byte, isCA bool) pathResult {
	b.Helper()
	ctx := context.Background()
	vb := e.vaultBefore(b, audit)
	cpuBefore := cpuNow(b)
	start := time.Now()
	jwt, err := e.cluster.ServiceAccountToken(ctx, benchNS, issuerSA, []string{"meshtrust"}, 10*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	vc, err := vaultapi.NewClient(&vaultapi.Config{Address: e.lab.Vault.Addr})
	if err != nil {
		b.Fatal(err)
	}
	login, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes/login", map[string]any{"role": "team-a", "jwt": jwt})
	if err != nil {
		b.Fatal(err)
	}
	vc.SetToken(login.Auth.ClientToken)
	path := "pki/sign/" + leafRole
	if isCA {
		path = "pki/root/sign-intermediate"
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range benchWorkers {
		wg.Go(func() {
			for i := range jobs {
				body := map[string]any{"csr": string(csrs[i]), "ttl": "1800s", "exclude_cn_from_sans": true}
				if isCA {
					body["common_name"] = fmt.Sprintf("east.mesh intermediate %d", i)
					body["max_path_length"] = 0
					body["permitted_uri_domains"] = []string{trustDomain}
				}
				if _, err := vc.Logical().WriteWithContext(ctx, path, body); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range csrs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res := pathResult{took: time.Since(start), cpu: cpuNow(b).sub(cpuBefore)}
	e.vaultCosts(b, audit, vb, &res)
	return res
}

// pathSummary is a path's figures over all its runs.
type pathSummary struct {
	runs                   int
	rate, minRate, maxRate float64
	// ratio is the median over rounds of rate / the ceiling's rate in the
	// same round, ratios each round's; zero and nil without a ceiling.
	ratio             float64
	ratios            []float64
	p50, p99          time.Duration
	created, approved time.Duration
	// writes is API writes per request; api and events are per request.
	writes float64
	api    map[string]float64
	events map[string]float64
	// The Vault figures are per run of 200 requests.
	logins, leases, vaultRequests, vaultConns, vaultReviews, allReviews float64
	vault                                                               map[string]float64
	// cpu is CPU seconds per run, by process.
	cpu map[string]float64
	// loads are the 1-minute load averages at the start of each run.
	loads  []string
	crPath bool
}

func summarize(paths []benchPath, runs map[string][]pathResult) map[string]pathSummary {
	out := map[string]pathSummary{}
	for _, p := range paths {
		rs := runs[p.name]
		n := float64(len(rs))
		s := pathSummary{runs: len(rs), api: map[string]float64{}, events: map[string]float64{}, vault: map[string]float64{}, cpu: map[string]float64{}}
		var rates []float64
		var lat []time.Duration
		var created, approved []time.Duration
		for _, r := range rs {
			rates = append(rates, r.rate())
			lat = append(lat, r.latencies...)
			if r.api != nil {
				s.crPath = true
				created, approved = append(created, r.created), append(approved, r.approved)
				for k, v := range r.api {
					if isWrite(k) {
						s.api[k] += v / (n * benchRequests)
						s.writes += v / (n * benchRequests)
					}
				}
				for k, v := range r.events {
					s.events[k] += float64(v) / (n * benchRequests)
				}
			}
			for k, v := range r.vault {
				s.vault[k] += float64(v) / n
				s.vaultRequests += float64(v) / n
			}
			for k, v := range r.cpu {
				s.cpu[k] += v / n
			}
			s.loads = append(s.loads, r.load)
			s.logins += float64(logins(r.vault)) / n
			s.vaultConns += float64(r.conns) / n
			s.leases += float64(r.leases) / n
			s.vaultReviews += r.reviews["flowschema "+vaultReviewerFlowSchema] / n
			s.allReviews += r.reviews["POST tokenreviews"] / n
		}
		s.rate, s.minRate, s.maxRate = median(rates), slices.Min(rates), slices.Max(rates)
		if c := runs[p.ceiling]; p.ceiling != "" {
			for i := range min(len(rs), len(c)) {
				s.ratios = append(s.ratios, rs[i].rate()/c[i].rate())
			}
			s.ratio = median(s.ratios)
		}
		if len(lat) > 0 {
			slices.Sort(lat)
			s.p50, s.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
			s.created, s.approved = median(created), median(approved)
		}
		out[p.name] = s
	}
	return out
}

func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// printSummary writes the table and where the writes and Vault requests
// come from. It goes to stdout: the testing package keeps only ten lines
// of a benchmark's log.
func printSummary(out io.Writer, paths []benchPath, s map[string]pathSummary, loadBefore, loadAfter string) {
	fmt.Fprintf(out, "\nBenchmarkIssuer: %d requests per path, %d workers, %d rounds after a warm-up round (median req/s, min-max); load average before %s, after %s\n\n",
		benchRequests, benchWorkers, s[paths[0].name].runs, loadBefore, loadAfter)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\treq/s\t(min-max)\t/ceiling\tAPI writes/req\tp50 approval→Ready\tp99\tVault logins\ttoken leases\tVault requests\tTokenReviews by Vault\t")
	for _, p := range paths {
		ps := s[p.name]
		ratio, writes, p50, p99 := "-", "-", "-", "-"
		if p.ceiling != "" {
			ratio = fmt.Sprintf("%.2fx", ps.ratio)
		}
		if ps.crPath {
			writes = fmt.Sprintf("%.2f", ps.writes)
			p50, p99 = ps.p50.Round(time.Millisecond).String(), ps.p99.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%.1f\t(%.0f-%.0f)\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
			p.name, ps.rate, ps.minRate, ps.maxRate, ratio, writes, p50, p99, ps.logins, ps.leases, ps.vaultRequests, ps.vaultReviews)
	}
	tw.Flush()
	fmt.Fprintf(out, "\n(Vault columns per %d requests, issuer set-up included; ceilings are the zero-work paths of the same round.)\n", benchRequests)
	for _, p := range paths {
		if ps := s[p.name]; p.ceiling != "" {
			var rs []string
			for _, r := range ps.ratios {
				rs = append(rs, fmt.Sprintf("%.2fx", r))
			}
			fmt.Fprintf(out, "%s / %s, round by round: %s\n", p.name, p.ceiling, strings.Join(rs, ", "))
		}
	}
	with, without := s["zero-work leaf"], s["zero-work leaf, no Initializing"]
	fmt.Fprintf(out, "issuer-lib's Initializing apply, zero-work leaf with / without it: %.1f / %.1f req/s (without = %.2fx with, same round), %.2f / %.2f API writes per request, p50 %s / %s, p99 %s / %s\n",
		with.rate, without.rate, without.ratio, with.writes, without.writes,
		with.p50.Round(time.Millisecond), without.p50.Round(time.Millisecond), with.p99.Round(time.Millisecond), without.p99.Round(time.Millisecond))
	fmt.Fprintln(out, "\nAPI writes per request, by verb and resource (API server's apiserver_request_total), and events by source:")
	for _, p := range paths {
		if ps := s[p.name]; ps.crPath {
			fmt.Fprintf(out, "  %-32s %s\n  %-32s events: %s\n  %-32s last created at %s, last approved at %s, done at %s\n", p.name, topCounts(ps.api, 1), "", topCounts(ps.events, 1),
				"", ps.created.Round(time.Millisecond), ps.approved.Round(time.Millisecond), (time.Duration(float64(time.Second) * benchRequests / ps.rate)).Round(time.Millisecond))
		}
	}
	fmt.Fprintf(out, "\nCPU seconds per run of %d requests, by process (/proc; other engineers' work not included):\n", benchRequests)
	for _, p := range paths {
		ps := s[p.name]
		var total float64
		for _, v := range ps.cpu {
			total += v
		}
		fmt.Fprintf(out, "  %-32s total %.2f: %s; 1-minute load at the start of each run: %s\n", p.name, total, topCounts(ps.cpu, 1), strings.Join(ps.loads, ", "))
	}
	fmt.Fprintf(out, "\nVault requests per %d requests (Vault audit device), and TokenReviews from any sender (API server):\n", benchRequests)
	for _, p := range paths {
		if ps := s[p.name]; ps.vaultRequests > 0 {
			fmt.Fprintf(out, "  %-32s %s; on %.1f TCP connections; TokenReviews, all senders: %.1f\n", p.name, topCounts(ps.vault, 1), ps.vaultConns, ps.allReviews)
		}
	}
	fmt.Fprintln(out)
}

// loadAverage is the 1, 5 and 15 minute load averages, for the record:
// figures measured while other work runs are upper bounds for latency.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
