package rotation

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/client-go/rest"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/rotation"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/syncer"
)

// fleetsEnv overrides the fleet sizes BenchmarkRotateRoot runs, e.g.
// "3,20".
const fleetsEnv = "MESHTRUST_ROTATE_BENCH_FLEETS"

// benchIstiods is how many clusters of a fleet run an istiod.
const benchIstiods = 3

// BenchmarkRotateRoot runs the whole rotation (rotate-root's library, as
// the CLI drives it) on fleets of 3 and 10 clusters, the first three with
// istiod, with the waits at zero: --old-root-wait 1ms and every
// Certificate's meshtrust.io/root-grace 0s. It prints the wall time, each
// phase's, and the Vault and Kubernetes API calls per cluster, counted at
// the HTTP transports. It asserts nothing. Run it with -benchtime=1x.
func BenchmarkRotateRoot(b *testing.B) {
	fleets := []int{3, 10}
	if v := os.Getenv(fleetsEnv); v != "" {
		fleets = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("%s=%q: want sizes such as 3,20", fleetsEnv, v)
			}
			fleets = append(fleets, n)
		}
	}
	for _, n := range fleets {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			for range b.N {
				benchRotation(b, n)
			}
		})
	}
}

func benchRotation(b *testing.B, size int) {
	b.StopTimer()
	var clusters []string
	for i := range size {
		clusters = append(clusters, fmt.Sprintf("kind%d", i+2))
	}
	setup := time.Now()
	e := newEnvWith(b, lab.Options{Clusters: clusters, IssuanceBackoff: 10 * time.Second, Istiod: true, IstiodClusters: benchIstiods}, 60*time.Minute)
	e.mustCLI("vault", "bootstrap")
	for _, n := range clusters {
		e.enrol(n, root1Ref)
		e.annotateCertificate(n, syncer.AnnotationRootGrace, "0s")
		e.startControllers(n)
	}
	for i, n := range clusters {
		e.waitState(n, func(*clusterState) error { return nil })
		if i < benchIstiods {
			if _, _, err := mesh.PlugIn(e.ctx, e.lab.Cluster(n), e.agents[n], workloadNamespace); err != nil {
				b.Fatal(err)
			}
		}
	}
	setupTook := time.Since(setup)

	vaultCalls := &callCounter{}
	vc := vaultapi.DefaultConfig()
	vc.Address = e.lab.Vault.Addr
	vc.MaxRetries = 0 // as vaultadmin.NewClient: the CLI fails fast
	vc.HttpClient.Transport = vaultCalls.wrap(vc.HttpClient.Transport)
	api, err := vaultapi.NewClient(vc)
	if err != nil {
		b.Fatal(err)
	}
	api.SetToken(e.lab.Vault.RootToken)
	vault := &vaultadmin.Client{API: api, Addr: e.lab.Vault.Addr}
	kubeCalls := make([]*callCounter, size)
	var fleet []rotation.Cluster
	for i, n := range clusters {
		cfg := rest.CopyConfig(e.lab.Cluster(n).Config)
		kubeCalls[i] = &callCounter{}
		cfg.WrapTransport = kubeCalls[i].wrap
		fleet = append(fleet, rotation.Cluster{Context: n, Config: cfg, WithoutIstiod: i >= benchIstiods})
	}
	var mu sync.Mutex
	phaseStart := map[rotation.Phase]time.Time{}
	o := rotation.Options{Mount: pkiMount, From: root1Ref, To: root2Ref,
		NewRoot:         vaultadmin.BootstrapOptions{CommonName: "meshtrust root CA 2", KeyType: "ec", TTL: 87600 * time.Hour},
		Wait:            time.Millisecond,
		WorkloadCertTTL: time.Millisecond,
		RootsCacheTTL:   time.Second, StepTimeout: 2 * time.Minute, Poll: 100 * time.Millisecond,
		Progress: func(ev rotation.Event) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := phaseStart[ev.Phase]; !ok {
				phaseStart[ev.Phase] = time.Now()
			}
			e.logf("  [%s] %s: %s", ev.Phase.Label(), ev.Cluster, ev.Message)
		}}
	f, err := rotation.New(o, vault, fleet)
	if err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	b.StartTimer()
	res, err := f.Run(e.ctx)
	b.StopTimer()
	took := time.Since(began)
	if err != nil {
		b.Fatal(err)
	}
	if res.Phase != rotation.Last {
		b.Fatalf("the rotation ended at %s", res.Phase)
	}

	fmt.Printf("\nrotate-root, %d clusters (%d with istiod), waits at zero; lab set-up %s\n", size, min(size, benchIstiods), setupTook.Round(time.Second))
	fmt.Printf("wall time                    %8s  (%d steps)\n", took.Round(10*time.Millisecond), res.Steps)
	var phases []rotation.Phase
	for p := range phaseStart {
		phases = append(phases, p)
	}
	sort.Slice(phases, func(i, j int) bool { return phases[i] < phases[j] })
	for i, p := range phases {
		end := began.Add(took)
		if i+1 < len(phases) {
			end = phaseStart[phases[i+1]]
		}
		fmt.Printf("  phase %-22s %8s\n", p.Label(), end.Sub(phaseStart[p]).Round(10*time.Millisecond))
	}
	var kr, kw, kmax int64
	for _, c := range kubeCalls {
		r, w := c.counts()
		kr, kw = kr+r, kw+w
		kmax = max(kmax, r+w)
	}
	vr, vw := vaultCalls.counts()
	fmt.Printf("Vault calls                  %5d reads  %4d writes  (%.1f per cluster)\n", vr, vw, float64(vr+vw)/float64(size))
	fmt.Printf("Kubernetes calls per cluster %7.1f reads %6.1f writes (max %d)\n", float64(kr)/float64(size), float64(kw)/float64(size), kmax)
	if rss, n := labRSS(); n > 0 {
		fmt.Printf("memory: %d processes of the lab (API servers, etcds, istiods, Vault) %.0f MiB RSS, this process %.0f MiB\n",
			n, float64(rss)/(1<<20), float64(selfRSS())/(1<<20))
	}
}

// callCounter counts HTTP requests, GETs apart from the rest.
type callCounter struct{ reads, writes atomic.Int64 }

func (c *callCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet || r.Method == "LIST" {
			c.reads.Add(1)
		} else {
			c.writes.Add(1)
		}
		return rt.RoundTrip(r)
	})
}

func (c *callCounter) counts() (reads, writes int64) { return c.reads.Load(), c.writes.Load() }

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// labRSS sums the resident memory of this process's children (the lab's
// servers) and counts them.
func labRSS() (bytes int64, n int) {
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		stat, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ")".
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[1] != self {
			continue
		}
		bytes += statusRSS(filepath.Join(filepath.Dir(d), "status"))
		n++
	}
	return bytes, n
}

func selfRSS() int64 { return statusRSS("/proc/self/status") }

// statusRSS reads VmRSS from a /proc status file.
func statusRSS(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
