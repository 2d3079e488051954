package syncer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/syncer"
)

const (
	benchChildEnv   = "MESHTRUST_BENCH_CHILD"
	benchKubeconfig = "MESHTRUST_BENCH_KUBECONFIG"
	noiseSecrets    = 10000
	noiseSize       = 4 << 10
)

// BenchmarkCacheMemory creates 10,000 unrelated 4 KiB Secrets and measures,
// in a fresh child process each, a manager running the syncer with its
// cache options against one running the syncer with a cache of all Secrets.
// It prints RSS (current and peak) and Go heap in use after a GC.
func BenchmarkCacheMemory(b *testing.B) {
	l := lab.New(b, lab.Options{Vault: lab.VaultNone})
	c := l.Clusters[0]
	ctx := context.Background()
	began := time.Now()
	createNoise(ctx, b, c)
	b.Logf("created %d Secrets of %d bytes in %s", noiseSecrets, noiseSize, time.Since(began).Round(time.Second))

	results := map[string]map[string]float64{}
	for _, mode := range []string{"syncer", "all-secrets"} {
		results[mode] = runChild(b, c.KubeconfigPath, mode)
	}
	fmt.Printf("\n%-12s %12s %12s %14s %10s\n", "cache", "RSS MiB", "peak RSS MiB", "heap inuse MiB", "secrets")
	for _, mode := range []string{"syncer", "all-secrets"} {
		r := results[mode]
		fmt.Printf("%-12s %12.1f %12.1f %14.1f %10.0f\n", mode, r["rss"]/(1<<20), r["hwm"]/(1<<20), r["heap"]/(1<<20), r["secrets"])
		b.ReportMetric(r["rss"]/(1<<20), "MiB-rss-"+mode)
		b.ReportMetric(r["heap"]/(1<<20), "MiB-heap-"+mode)
	}
}

func createNoise(ctx context.Context, b *testing.B, c *lab.Cluster) {
	if err := c.EnsureNamespace(ctx, "noise"); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, noiseSize)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "noise", Name: fmt.Sprintf("noise-%05d", i)},
					Data: map[string][]byte{"blob": payload}}
				if err := c.Client.Create(ctx, s); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for i := 0; i < noiseSecrets; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

func runChild(b *testing.B, kubeconfig, mode string) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+mode, benchKubeconfig+"="+kubeconfig)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child %s: %v", mode, err)
	}
	res := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				res[k] = f
			}
		}
	}
	if _, ok := res["rss"]; !ok {
		b.Fatalf("child %s printed no figures: %s", mode, out)
	}
	return res
}

// benchChild runs in the child process: start a manager with the syncer,
// wait until its Secret informer has synced, GC, and print memory figures.
func benchChild(mode string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "bench child:", err); return 1 }
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(benchKubeconfig))
	if err != nil {
		return fail(err)
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fail(err)
	}
	if err := cmapi.AddToScheme(scheme); err != nil {
		return fail(err)
	}
	opts := syncer.DefaultOptions()
	byObject := syncer.CacheOptions(opts)
	if mode == "all-secrets" {
		for obj := range byObject {
			if _, ok := obj.(*corev1.Secret); ok {
				delete(byObject, obj)
			}
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: byObject},
	})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := syncer.Setup(ctx, mgr, opts); err != nil {
		return fail(err)
	}
	go func() { _ = mgr.Start(ctx) }()
	var secrets int
	err = lab.WaitFor(ctx, 3*time.Minute, func(ctx context.Context) error {
		inf, err := mgr.GetCache().GetInformer(ctx, &corev1.Secret{})
		if err != nil {
			return err
		}
		if !inf.HasSynced() {
			return fmt.Errorf("Secret informer not synced")
		}
		var sl corev1.SecretList
		if err := mgr.GetCache().List(ctx, &sl, client.InNamespace("noise")); err != nil {
			return err
		}
		secrets = len(sl.Items)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, hwm := procStatus("VmRSS:"), procStatus("VmHWM:")
	fmt.Printf("rss=%d\nhwm=%d\nheap=%d\nsecrets=%d\n", rss, hwm, ms.HeapInuse, secrets)
	return 0
}

// procStatus reads a kB figure from /proc/self/status, in bytes.
func procStatus(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n << 10
			}
		}
	}
	return -1
}
