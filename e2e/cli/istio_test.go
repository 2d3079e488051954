package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// TestIstioTrustDomain proves on real istiods that the trust-domain check
// guards something real. kind2 and kind3 share meshtrust's root, and their
// workloads, with certificates from their own istiods, talk. Then kind2's
// mesh ConfigMap gets another trustDomain and its istiod restarts on it:
// istiod signs without an error, yet kind3 refuses the certificate on
// kind2's intermediate's name constraint; meshtrust status exits 1 naming
// both trust domains, and the syncer emits a Warning event. Put back, the
// handshake works again and status is healthy.
func TestIstioTrustDomain(t *testing.T) {
	l := lab.New(t, lab.Options{Clusters: []string{"kind2", "kind3"}, Istiod: true, IssuanceBackoff: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	owner, err := mesh.NewCLI(l, "kind2")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	configs := map[string]*rest.Config{}
	for _, c := range l.Clusters {
		configs[c.Name] = c.Config
	}
	if err := lab.WriteKubeconfig(kubeconfig, configs, "kind2"); err != nil {
		t.Fatal(err)
	}
	c := &cli{env: map[string]string{"VAULT_ADDR": l.Vault.Addr, "VAULT_TOKEN": l.Vault.RootToken, "KUBECONFIG": kubeconfig, "HOME": t.TempDir()}}
	if r := c.run(t, "vault", "bootstrap"); r.code != 0 {
		t.Fatalf("bootstrap: exit %d", r.code)
	}
	const ns = "default"
	agents := map[string]*istio.Agent{}
	for _, cl := range l.Clusters {
		if _, err := owner.Enrol(ctx, cl); err != nil {
			t.Fatal(err)
		}
		m, err := mesh.StartControllers(ctx, cl, mesh.ControllerOptions(logr.Discard()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := m.Stop(); err != nil {
				t.Errorf("meshtrust's controllers in %s: %v", cl.Name, err)
			}
		})
		if agents[cl.Name], err = mesh.Workload(cl, ns, "sleep"); err != nil {
			t.Fatal(err)
		}
	}
	kind2 := l.Cluster("kind2")
	served := map[string]*mesh.Served{}
	for _, cl := range l.Clusters {
		lab.Eventually(t, 2*time.Minute, "cacerts in "+cl.Name, func(ctx context.Context) error {
			_, err := mesh.CACerts(ctx, cl)
			return err
		})
		if _, served[cl.Name], err = mesh.PlugIn(ctx, cl, agents[cl.Name], ns); err != nil {
			t.Fatal(err)
		}
	}
	handshake := func(client *istio.Identity) error {
		_, err := workload.Handshake(ctx,
			workload.Peer{Cert: served["kind3"].Identity.Cert, Roots: served["kind3"].Roots.Pool, Expect: client.Cert.Leaf.URIs[0].String()},
			workload.Peer{Cert: client.Cert, Roots: served["kind2"].Roots.Pool, Expect: agents["kind3"].ID()})
		return err
	}
	status := func() result {
		t.Helper()
		var r result
		// The source Certificates turn Ready a moment after cacerts.
		lab.Eventually(t, time.Minute, "status to see Ready sources", func(context.Context) error {
			r = c.run(t, "status", "--context", "kind2", "--context", "kind3")
			if strings.Contains(r.stdout, "is not Ready") {
				return fmt.Errorf("a source Certificate is not Ready yet")
			}
			return nil
		})
		return r
	}
	if err := handshake(served["kind2"].Identity); err != nil {
		t.Fatalf("kind2's workload cannot call kind3's before anything is changed: %v", err)
	}
	if r := status(); r.code != 0 {
		t.Fatalf("status before: exit %d, want 0", r.code)
	}

	setTrustDomain := func(td string) {
		t.Helper()
		var cm corev1.ConfigMap
		if err := kind2.Client.Get(ctx, client.ObjectKey{Namespace: istio.Namespace, Name: istio.MeshConfigMap}, &cm); err != nil {
			t.Fatal(err)
		}
		cm.Data["mesh"] = strings.Replace(cm.Data["mesh"], "trustDomain: "+kind2.Istiod.TrustDomain, "trustDomain: "+td, 1)
		if !strings.Contains(cm.Data["mesh"], "trustDomain: "+td) {
			t.Fatalf("the lab's mesh config does not set trustDomain as expected:\n%s", cm.Data["mesh"])
		}
		if err := kind2.Client.Update(ctx, &cm); err != nil {
			t.Fatal(err)
		}
		if _, err := kind2.Istiod.MeshConfig.WaitProjected(ctx, cm.ResourceVersion); err != nil {
			t.Fatal(err)
		}
		// As `kubectl rollout restart deployment/istiod` after a mesh change.
		if err := kind2.Istiod.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if mc, err := kind2.Istiod.ActiveMesh(ctx); err != nil || mc.GetTrustDomain() != td {
			t.Fatalf("kind2's istiod runs with trustDomain %q (%v), want %q", mc.GetTrustDomain(), err, td)
		}
		kind2.Istiod.TrustDomain = td
	}

	setTrustDomain("wrong.mesh")
	wrong, err := agents["kind2"].Certificate(ctx)
	if err != nil {
		t.Fatalf("istiod refused to sign with a trustDomain its intermediate does not allow: %v (it is expected to sign without checking)", err)
	}
	if got := wrong.Cert.Leaf.URIs[0].String(); !strings.HasPrefix(got, "spiffe://wrong.mesh/") {
		t.Fatalf("istiod signed %s, want an identity in wrong.mesh", got)
	}
	err = handshake(wrong)
	t.Logf("istiod signed %s without an error; kind3 refuses it: %v", wrong.Cert.Leaf.URIs[0], err)
	if err == nil || !strings.Contains(err.Error(), "not permitted by any constraint") {
		t.Errorf("kind3 accepted, or refused for another reason, kind2's workload certificate for %s: %v", wrong.Cert.Leaf.URIs[0], err)
	}
	r := status()
	if r.code != 1 || strings.TrimSpace(r.stderr) != "meshtrust: UNHEALTHY: kind2" ||
		!strings.Contains(r.stdout, `Istio's meshConfig.trustDomain is "wrong.mesh" (ConfigMap istio-system/istio), but the intermediate in cacerts is constrained to "kind2"`) {
		t.Errorf("status with kind2's trustDomain wrong: exit %d %q, want 1 naming kind2, wrong.mesh and kind2's constraint", r.code, r.stderr)
	}
	if err := mesh.Renew(ctx, kind2, istio.Namespace, mesh.IntermediateCertificate, 30*time.Second, "TestIstioTrustDomain"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, time.Minute, "the syncer's Warning event "+decision.ReasonMeshTrustDomain, func(ctx context.Context) error {
		var list corev1.EventList
		if err := kind2.Client.List(ctx, &list, client.InNamespace(istio.Namespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Name == mesh.IntermediateCertificate && e.Reason == decision.ReasonMeshTrustDomain &&
				strings.Contains(e.Message, `"wrong.mesh"`) && strings.Contains(e.Message, `"kind2"`) {
				return nil
			}
		}
		return fmt.Errorf("no %s event on %s/%s", decision.ReasonMeshTrustDomain, istio.Namespace, mesh.IntermediateCertificate)
	})

	setTrustDomain("kind2")
	lab.Eventually(t, mesh.IstiodWait, "kind2's istiod to sign for kind2 again", func(ctx context.Context) error {
		s, err := mesh.Serve(ctx, kind2, agents["kind2"], ns)
		if err != nil {
			return err
		}
		served["kind2"] = s
		return nil
	})
	if err := handshake(served["kind2"].Identity); err != nil {
		t.Errorf("kind2's workload cannot call kind3's once trustDomain is back: %v", err)
	}
	if r := status(); r.code != 0 {
		t.Errorf("status once trustDomain is back: exit %d, want 0", r.code)
	}
}
