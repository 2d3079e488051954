package issuer_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
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
)

// BenchmarkIssuer compares three ways of signing the same 200 CSRs with the
// same Vault, Kubernetes auth everywhere:
//
//  1. meshtrust: CertificateRequests to a VaultIssuer;
//  2. cert-manager's built-in Vault issuer: CertificateRequests to an
//     Issuer of type vault (its certificaterequests-issuer-vault controller);
//  3. the floor: direct Vault calls with one token.
//
// Leaves go through <mount>/sign/<role> on all three; intermediates through
// sign-intermediate on paths 1 and 3. It prints throughput, Vault logins
// (counted as new token accessors in Vault) and ratios. Run it with
// -benchtime=1x: each iteration is a full round of 200 requests per path.
func BenchmarkIssuer(b *testing.B) {
	ctx := context.Background()
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	e, err := startEnv(startCtx, lab.Options{Vault: lab.VaultDev, ExtraCertManagerControllers: []string{"certificaterequests-issuer-vault"}}, 5*time.Minute)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer e.stop()

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

	b.ResetTimer()
	var res map[string]pathResult
	for round := range b.N {
		res = map[string]pathResult{}
		res["meshtrust leaf"] = e.benchCRs(b, wc, round, "mt-leaf", leafCSRs, false, e.meshtrustIssuer(b, round, "mt-leaf"))
		res["cert-manager leaf"] = e.benchCRs(b, wc, round, "cm-leaf", leafCSRs, false, e.certManagerIssuer(b, round))
		res["floor leaf"] = e.benchDirect(b, leafCSRs, false)
		res["meshtrust intermediate"] = e.benchCRs(b, wc, round, "mt-ca", caCSRs, true, e.meshtrustIssuer(b, round, "mt-ca"))
		res["floor intermediate"] = e.benchDirect(b, caCSRs, true)
	}
	b.StopTimer()

	for _, name := range []string{"meshtrust leaf", "cert-manager leaf", "floor leaf", "meshtrust intermediate", "floor intermediate"} {
		r := res[name]
		b.Logf("%-24s %4d requests in %8s = %7.1f/s, Vault logins: %d", name, benchRequests, r.took.Round(time.Millisecond), r.rate(), r.logins)
		if r.api != "" {
			b.Logf("%-24s last created at %s, last approved at %s; %s", "", r.created.Round(time.Millisecond), r.approved.Round(time.Millisecond), r.api)
		}
	}
	// One line for the ratios: the testing package keeps only ten log lines
	// of a benchmark.
	mt, cm, fl := res["meshtrust leaf"], res["cert-manager leaf"], res["floor leaf"]
	mi, fi := res["meshtrust intermediate"], res["floor intermediate"]
	b.Logf("leaf: meshtrust/cert-manager = %.2fx (goal >= 4x), meshtrust/floor = %.2fx (goal >= 0.3x), logins %d vs %d (goal <= 2); intermediate: meshtrust/floor = %.2fx, logins %d",
		mt.rate()/cm.rate(), mt.rate()/fl.rate(), mt.logins, cm.logins, mi.rate()/fi.rate(), mi.logins)
	b.ReportMetric(mt.rate(), "meshtrust-leaf/s")
	b.ReportMetric(cm.rate(), "certmanager-leaf/s")
	b.ReportMetric(fl.rate(), "floor-leaf/s")
	b.ReportMetric(mi.rate(), "meshtrust-ca/s")
	b.ReportMetric(fi.rate(), "floor-ca/s")
	b.ReportMetric(float64(mt.logins), "meshtrust-logins")
	b.ReportMetric(float64(cm.logins), "certmanager-logins")
}

type pathResult struct {
	took   time.Duration
	logins int
	// api is the API server calls made during the path, per request.
	api string
	// created and approved are when the last request was created and
	// approved, from the start: stages every CertificateRequest path
	// shares, which bound what any issuer can reach.
	created, approved time.Duration
}

func (r pathResult) rate() float64 { return float64(benchRequests) / r.took.Seconds() }

// tokenCount is the number of live tokens in Vault: each login adds one.
func (e *env) tokenCount(b *testing.B) int {
	b.Helper()
	s, err := e.vault.Logical().List("auth/token/accessors")
	if err != nil {
		b.Fatal(err)
	}
	if s == nil {
		return 0
	}
	keys, _ := s.Data["keys"].([]any)
	return len(keys)
}

// meshtrustIssuer returns a ref to a new, Ready VaultIssuer.
func (e *env) meshtrustIssuer(b *testing.B, round int, name string) func() cmmeta.IssuerReference {
	return func() cmmeta.IssuerReference {
		vi := &v1alpha1.VaultIssuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", name, round)},
			Spec:       e.spec(kubernetesAuth("team-a", "meshtrust"), trustDomain),
		}
		if err := e.client.Create(context.Background(), vi); err != nil {
			b.Fatal(err)
		}
		e.waitIssuer(b, vi, metav1.ConditionTrue, "")
		return issuerRef(vi.Name)
	}
}

// certManagerIssuer returns a ref to a new, Ready cert-manager Issuer of
// type vault using the same Vault role through Kubernetes auth.
func (e *env) certManagerIssuer(b *testing.B, round int) func() cmmeta.IssuerReference {
	return func() cmmeta.IssuerReference {
		iss := &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: fmt.Sprintf("cm-vault-%d", round)},
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
		return cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: iss.Name}
	}
}

// benchCRs times 200 CertificateRequests from the first create to the last
// Ready, watched rather than polled.
func (e *env) benchCRs(b *testing.B, wc client.WithWatch, round int, path string, csrs [][]byte, isCA bool, issuer func() cmmeta.IssuerReference) pathResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	label := fmt.Sprintf("%s-%d", path, round)
	w, err := wc.Watch(ctx, &cmapi.CertificateRequestList{}, client.InNamespace(benchNS), client.MatchingLabels{"bench": label})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	// The issuer is created and Ready before the clock starts, for both
	// kinds alike; its logins still count.
	tokensBefore := e.tokenCount(b)
	ref := issuer()
	callsBefore := e.apiCalls(b)
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	createdAt := make(chan time.Duration, 1)
	for range benchWorkers {
		wg.Go(func() {
			for i := range jobs {
				cr := newCR(benchNS, fmt.Sprintf("%s-%d", label, i), ref, csrs[i], isCA, 30*time.Minute)
				cr.Labels = map[string]string{"bench": label}
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
	ready, approved := map[string]bool{}, map[string]bool{}
	var lastApproved time.Duration
	for len(ready) < len(csrs) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("%s: watch closed with %d of %d Ready", path, len(ready), len(csrs))
			}
			cr, isCR := ev.Object.(*cmapi.CertificateRequest)
			if !isCR || ev.Type == watch.Deleted {
				continue
			}
			if !approved[cr.Name] && cmutilHasApproved(cr) {
				approved[cr.Name] = true
				lastApproved = time.Since(start)
			}
			if c := crReady(cr); c != nil {
				switch {
				case c.Status == cmmeta.ConditionTrue:
					ready[cr.Name] = true
				case c.Reason == cmapi.CertificateRequestReasonFailed:
					b.Fatalf("%s: %s failed: %s", path, cr.Name, c.Message)
				}
			}
		case <-ctx.Done():
			b.Fatalf("%s: timed out with %d of %d Ready", path, len(ready), len(csrs))
		}
	}
	took := time.Since(start)
	res := pathResult{took: took, logins: e.tokenCount(b) - tokensBefore, api: apiCallsDiff(callsBefore, e.apiCalls(b)),
		created: <-createdAt, approved: lastApproved}
	// Clean up outside the timed window so later paths start alike.
	if err := e.client.DeleteAllOf(context.Background(), &cmapi.CertificateRequest{}, client.InNamespace(benchNS), client.MatchingLabels{"bench": label}); err != nil {
		b.Fatal(err)
	}
	return res
}

// benchDirect signs the CSRs straight through Vault with one Kubernetes
// auth login, the same number of workers, and nothing else: the floor.
func (e *env) benchDirect(b *testing.B, csrs [][]byte, isCA bool) pathResult {
	b.Helper()
	ctx := context.Background()
	tokensBefore := e.tokenCount(b)
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
	return pathResult{took: time.Since(start), logins: e.tokenCount(b) - tokensBefore}
}

func cmutilHasApproved(cr *cmapi.CertificateRequest) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionApproved && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}

// apiCalls counts the API server's requests by "VERB resource[/subresource]",
// from its apiserver_request_total metric, leaving out watches and lists
// (long-running or informer start-up, not per-request work).
func (e *env) apiCalls(b *testing.B) map[string]float64 {
	b.Helper()
	raw, err := e.cluster.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		end := strings.LastIndex(rest, "} ")
		if end < 0 {
			continue
		}
		labels := map[string]string{}
		for kv := range strings.SplitSeq(rest[:end], ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = strings.Trim(v, `"`)
		}
		if labels["verb"] == "WATCH" || labels["verb"] == "LIST" {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(rest[end+2:]), 64)
		if err != nil {
			continue
		}
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		out[key] += n
	}
	return out
}

// apiCallsDiff formats after-before, largest first, per request.
func apiCallsDiff(before, after map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var diffs []kv
	var total float64
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			diffs = append(diffs, kv{k, d})
			total += d
		}
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].v > diffs[j].v })
	parts := []string{fmt.Sprintf("%.1f API calls/request:", total/benchRequests)}
	for _, d := range diffs {
		if d.v/benchRequests >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", d.k, d.v/benchRequests))
		}
	}
	return strings.Join(parts, " ")
}
