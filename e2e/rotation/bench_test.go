package rotation

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// benchRenewals is how many intermediates the propagation benchmark
// renews, alternating between its two clusters.
const benchRenewals = 20

// BenchmarkRotationPropagation renews intermediates the way `cmctl renew`
// does and times each renewal until the cluster's real istiod signs the
// first workload certificate with the new intermediate, split into:
//
//   - cert-manager issuance: from the renewal to the Certificate's Secret
//     holding the new intermediate (cert-manager's controllers, meshtrust's
//     issuer, Vault);
//   - the syncer's write: to the watch of cacerts delivering the version
//     that holds it;
//   - the projector: from there to that version in istiod's ROOT_CA_DIR
//     (the lab's stand-in for kubelet, which in a cluster adds up to its
//     sync period, a minute by default);
//   - istiod's reload: to the first CreateCertificate reply signed with it
//     (istiod waits 100ms after a file event before it reads the files;
//     the certificates are asked for every 10ms from the moment cacerts
//     changes).
//
// It prints p50 and p95 of each over 20 renewals, the time istiod's reload
// log line comes after the projection, and each istiod's memory. It
// asserts nothing. Run it with -benchtime=1x.
func BenchmarkRotationPropagation(b *testing.B) {
	clusters := []string{"kind2", "kind3"}
	e := newEnv(b, clusters...)
	e.mustCLI("vault", "bootstrap")
	watches := map[string]*secretTimes{}
	for _, n := range clusters {
		e.enrol(n, root1Ref)
		e.startControllers(n)
		watches[n] = watchSecrets(b, e, n)
	}
	for _, n := range clusters {
		e.waitState(n, func(*clusterState) error { return nil })
		if _, _, err := mesh.PlugIn(e.ctx, e.lab.Cluster(n), e.agents[n], workloadNamespace); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	var samples []propagation
	for range b.N {
		samples = samples[:0]
		for i := range benchRenewals {
			n := clusters[i%len(clusters)]
			samples = append(samples, e.propagate(n, watches[n]))
		}
	}
	b.StopTimer()

	phases := []struct {
		name string
		of   func(propagation) time.Duration
	}{
		{"cert-manager issuance", func(p propagation) time.Duration { return p.issued.Sub(p.renewed) }},
		{"syncer's write", func(p propagation) time.Duration { return p.synced.Sub(p.issued) }},
		{"projector", func(p propagation) time.Duration { return p.projected.Sub(p.synced) }},
		{"istiod's reload", func(p propagation) time.Duration { return p.served.Sub(p.projected) }},
		{"total", func(p propagation) time.Duration { return p.served.Sub(p.renewed) }},
		{"(istiod's reload log line)", func(p propagation) time.Duration { return p.logged.Sub(p.projected) }},
	}
	fmt.Printf("\nrotation propagation over %d renewals (%d per cluster), renewal -> first workload certificate istiod signs with the new intermediate\n",
		len(samples), len(samples)/len(clusters))
	fmt.Printf("%-28s %10s %10s %10s\n", "phase", "p50", "p95", "max")
	for _, ph := range phases {
		var d []time.Duration
		for _, s := range samples {
			d = append(d, ph.of(s))
		}
		slices.Sort(d)
		p50, p95 := percentile(d, 50), percentile(d, 95)
		fmt.Printf("%-28s %10s %10s %10s\n", ph.name, ms(p50), ms(p95), ms(d[len(d)-1]))
		if ph.name == "total" {
			b.ReportMetric(float64(p50.Milliseconds()), "ms-p50-total")
			b.ReportMetric(float64(p95.Milliseconds()), "ms-p95-total")
		}
	}
	fmt.Printf("\n%-10s %12s %14s\n", "istiod", "RSS MiB", "peak RSS MiB")
	for _, n := range clusters {
		i := e.lab.Cluster(n).Istiod
		rss, peak := float64(i.ResidentBytes())/(1<<20), float64(i.PeakResidentBytes())/(1<<20)
		fmt.Printf("%-10s %12.1f %14.1f\n", n, rss, peak)
		b.ReportMetric(rss, "MiB-rss-istiod-"+n)
	}
}

// propagation is one renewal's timeline.
type propagation struct {
	renewed   time.Time // the Issuing condition set
	issued    time.Time // the Certificate's Secret holds the new intermediate
	synced    time.Time // the projector's watch delivers the cacerts that holds it
	projected time.Time // ROOT_CA_DIR holds it
	logged    time.Time // istiod's reload line (its own timestamp)
	served    time.Time // the first workload certificate under it returned
}

// propagate renews the cluster's intermediate once and times it.
func (e *env) propagate(name string, w *secretTimes) propagation {
	e.t.Helper()
	c := e.lab.Cluster(name)
	before := e.mustState(name)
	rev := e.revision(name)
	mark := c.Istiod.Mark()
	var p propagation
	p.renewed = time.Now()
	if err := mesh.TriggerRenewal(e.ctx, c, waitLimit, "the propagation benchmark"); err != nil {
		e.t.Fatal(err)
	}
	var serial *big.Int
	p.issued, serial = w.wait(e, sourceSecret, p.renewed, func(s *big.Int) bool { return s.Cmp(before.CA.Cert.SerialNumber) != 0 })
	_, rv := w.waitVersion(e, mesh.CACertsSecret, p.renewed, serial)
	err := lab.WaitEvery(e.ctx, waitLimit, 10*time.Millisecond, func(ctx context.Context) error {
		id, err := e.agents[name].Certificate(ctx)
		if err != nil {
			return lab.Final(err)
		}
		if len(id.Intermediates) == 0 || id.Intermediates[0].SerialNumber.Cmp(serial) != 0 {
			return fmt.Errorf("istiod still signs with the previous intermediate")
		}
		p.served = time.Now()
		return nil
	})
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	proj, err := c.Istiod.CACerts.WaitProjected(e.ctx, rv)
	if err != nil {
		e.t.Fatal(err)
	}
	p.synced, p.projected = proj.Received, proj.At
	r, err := c.Istiod.WaitReaction(e.ctx, mark, p.projected, waitLimit)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.Refused {
		e.t.Fatalf("%s: %v", name, &lab.CACertsRefusedError{Cluster: name, Line: r.Verdict, LogPath: c.Istiod.LogPath})
	}
	p.logged = r.Verdict.At
	// The next renewal starts from a settled Certificate.
	lab.Eventually(e.t, waitLimit, name+"'s Certificate to be Ready again", func(ctx context.Context) error {
		crt, err := mesh.Intermediate(ctx, c)
		if err != nil {
			return err
		}
		return mesh.ReadyAt(crt, rev+1)
	})
	return p
}

// secretTimes records when each version of the Secrets in istio-system
// reached this process, with the serial of the certificate it holds.
type secretTimes struct {
	mu     sync.Mutex
	events []secretEvent
}

type secretEvent struct {
	at     time.Time
	name   string
	rv     string
	serial *big.Int
}

func watchSecrets(b *testing.B, e *env, cluster string) *secretTimes {
	w := &secretTimes{}
	cs := e.lab.Cluster(cluster).Clientset
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "secrets", istio.Namespace, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})
	record := func(o any) {
		at := time.Now()
		s, ok := o.(*corev1.Secret)
		if !ok {
			return
		}
		key := pki.TLSCertKey
		if s.Name == mesh.CACertsSecret {
			key = pki.CACertKey
		}
		certs, err := pki.DecodeCertificates(s.Data[key], pki.MaxChainPEMSize)
		if err != nil || len(certs) == 0 {
			return
		}
		w.mu.Lock()
		w.events = append(w.events, secretEvent{at: at, name: s.Name, rv: s.ResourceVersion, serial: certs[0].SerialNumber})
		w.mu.Unlock()
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.Run(ctx.Done())
	}()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	if !cache.WaitForCacheSync(e.ctx.Done(), inf.HasSynced) {
		b.Fatal("watching Secrets: the first list did not complete")
	}
	return w
}

// wait returns when Secret name first held a certificate whose serial
// matches, after since.
func (w *secretTimes) wait(e *env, name string, since time.Time, match func(*big.Int) bool) (time.Time, *big.Int) {
	e.t.Helper()
	var at time.Time
	var serial *big.Int
	lab.Eventually(e.t, waitLimit, "Secret "+name+" to change", func(context.Context) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, ev := range w.events {
			if ev.name == name && ev.at.After(since) && match(ev.serial) {
				at, serial = ev.at, ev.serial
				return nil
			}
		}
		return fmt.Errorf("no new version of Secret %s yet", name)
	})
	return at, serial
}

// waitVersion is wait for a given serial, also returning the version's
// resourceVersion.
func (w *secretTimes) waitVersion(e *env, name string, since time.Time, serial *big.Int) (time.Time, string) {
	e.t.Helper()
	at, _ := w.wait(e, name, since, func(s *big.Int) bool { return s.Cmp(serial) == 0 })
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if ev.name == name && ev.at.Equal(at) {
			return at, ev.rv
		}
	}
	return at, ""
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}
