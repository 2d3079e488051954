package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/e2e/deploy"
)

// toggle is one set of chart values; toggles together switch every
// optional part of the chart on and off at least once.
type toggle struct {
	name string
	set  []string
}

var toggles = []toggle{
	{name: "defaults"},
	{name: "issuer only", set: []string{"syncer.enabled=false"}},
	{name: "syncer only", set: []string{"issuer.enabled=false"}},
	{name: "single replica", set: []string{"replicaCount=1", "leaderElection.enabled=false", "podDisruptionBudget.enabled=false"}},
	{name: "service monitor", set: []string{"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prometheus"}},
	{name: "restart deployments", set: []string{"syncer.restartDeployments.enabled=true", "syncer.restartDeployments.names={istiod,istiod-canary}"}},
	{name: "no CSR, no policy, no metrics service", set: []string{"issuer.kubernetesCSR=false", "admissionPolicy.enabled=false", "metrics.service.enabled=false"}},
	{name: "alert rules and dashboard", set: []string{
		"metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=prometheus",
		"metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.annotations.grafana_folder=meshtrust",
	}},
	{name: "CRDs managed elsewhere", set: []string{"crds.enabled=false"}},
	{name: "CRDs not kept", set: []string{"crds.keep=false"}},
	{name: "CRLs off", set: []string{"issuer.crlRefreshInterval=0s", "syncer.crlPropagationDelay=0s"}},
	{name: "everything named", set: []string{
		"fullnameOverride=mt", "serviceAccount.create=false", "serviceAccount.name=mt-sa",
		"issuer.clusterResourceNamespace=vault-config", "issuer.issuerNamespaces={team-a,team-b}",
		"issuer.vaultServiceAccounts={vault-auth,vault-auth-2}",
		"syncer.watchNamespaces={istio-system,istio-canary}", "syncer.targetNamespaces={istio-system,istio-canary}",
		"syncer.secretName=plugged-ca", "image.digest=sha256:" + strings.Repeat("a", 64),
		"extraArgs={--zap-stacktrace-level=panic}", "logging.format=console", "logging.level=debug",
		"issuer.crlRefreshInterval=30s", "syncer.crlPropagationDelay=10m",
	}},
}

func TestHelmLint(t *testing.T) {
	h := helm(t)
	for _, tg := range toggles {
		t.Run(tg.name, func(t *testing.T) {
			args := []string{"lint", "--strict", deploy.ChartDir, "--namespace", "meshtrust-system"}
			for _, s := range tg.set {
				args = append(args, "--set", s)
			}
			out, err := h.Run(testCtx(t, time.Minute), args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("0 chart(s) failed")) || bytes.Contains(out, []byte("[WARNING]")) || bytes.Contains(out, []byte("[ERROR]")) {
				t.Fatalf("helm lint is not clean:\n%s", out)
			}
		})
	}
}

func TestRenderHardensTheDeployment(t *testing.T) {
	for _, tg := range toggles {
		t.Run(tg.name, func(t *testing.T) {
			objs := render(t, "meshtrust", "meshtrust-system", tg.set...)
			deps := ofKind(objs, "Deployment")
			if len(deps) != 1 {
				t.Fatalf("want one Deployment, got %d", len(deps))
			}
			d := convert[appsv1.Deployment](t, deps[0])
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("want one container, got %d", len(pod.Containers))
			}
			c := pod.Containers[0]
			ps, sc := pod.SecurityContext, c.SecurityContext
			switch {
			case ps == nil || sc == nil:
				t.Fatal("pod or container securityContext missing")
			case ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
				t.Error("runAsNonRoot is not true on pod and container")
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Error("root filesystem is writable")
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Error("privilege escalation is allowed")
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
				t.Errorf("capabilities: %+v, want drop [ALL] and add none", sc.Capabilities)
			case ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Error("pod seccomp profile is not RuntimeDefault")
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[res]; !ok {
					t.Errorf("no %s request", res)
				}
				if _, ok := c.Resources.Limits[res]; !ok {
					t.Errorf("no %s limit", res)
				}
			}
			for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
				if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "health" {
					t.Errorf("probe on %s: got %+v", path, probe)
				}
			}
			if !hasPort(c, "health", 8081) || !hasPort(c, "metrics", 8080) {
				t.Errorf("ports: %+v", c.Ports)
			}
			if pod.ServiceAccountName == "" {
				t.Error("no serviceAccountName")
			}
			leader := slices.Contains(c.Args, "--leader-elect=true")
			pdb := len(ofKind(objs, "PodDisruptionBudget")) == 1
			if *d.Spec.Replicas > 1 && (!leader || !pdb) {
				t.Errorf("%d replicas need leader election (%v) and a PodDisruptionBudget (%v)", *d.Spec.Replicas, leader, pdb)
			}
		})
	}
}

func hasPort(c corev1.Container, name string, port int32) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == port {
			return true
		}
	}
	return false
}

func TestRenderDefaults(t *testing.T) {
	objs := render(t, "meshtrust", "meshtrust-system")
	d := convert[appsv1.Deployment](t, find(objs, "Deployment", "meshtrust-system", "meshtrust-controller"))
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas: %d, want 2", *d.Spec.Replicas)
	}
	if d.Spec.Template.Spec.ServiceAccountName != "meshtrust-controller" {
		t.Errorf("service account %q: `meshtrust vault enroll` binds meshtrust-controller by default", d.Spec.Template.Spec.ServiceAccountName)
	}
	wantArgs := []string{
		"--leader-elect=true", "--leader-election-namespace=meshtrust-system",
		"--enable-issuer=true", "--enable-syncer=true",
		"--issuer-cluster-resource-namespace=meshtrust-system",
		"--syncer-watch-namespaces=istio-system", "--syncer-target-namespaces=istio-system", "--syncer-secret-name=cacerts",
	}
	for _, a := range wantArgs {
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, a) {
			t.Errorf("missing arg %s in %v", a, d.Spec.Template.Spec.Containers[0].Args)
		}
	}
	for _, want := range []struct{ kind, ns, name string }{
		{"ServiceAccount", "meshtrust-system", "meshtrust-controller"},
		{"PodDisruptionBudget", "meshtrust-system", "meshtrust-controller"},
		{"Service", "meshtrust-system", "meshtrust-controller-metrics"},
		{"Role", "meshtrust-system", "meshtrust-controller-leader-election"},
		{"Role", "meshtrust-system", "meshtrust-controller-issuer"},
		{"Role", "istio-system", "meshtrust-controller-syncer-watch"},
		{"Role", "istio-system", "meshtrust-controller-syncer-write"},
		{"ClusterRole", "", "meshtrust-controller-issuer"},
		{"ClusterRole", "", "meshtrust-controller-events"},
		{"ValidatingAdmissionPolicy", "", "meshtrust-controller-secret-create"},
		{"ValidatingAdmissionPolicyBinding", "", "meshtrust-controller-secret-create"},
	} {
		if find(objs, want.kind, want.ns, want.name) == nil {
			t.Errorf("default render lacks %s %s/%s", want.kind, want.ns, want.name)
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		if len(ofKind(objs, kind)) != 0 {
			t.Errorf("%s rendered by default; it needs prometheus-operator's CRD", kind)
		}
	}
	if len(ofKind(objs, "ConfigMap")) != 0 {
		t.Error("a ConfigMap (the dashboard) is rendered by default")
	}
	// The CRDs are the chart's own objects, so that upgrades reach them,
	// and survive an uninstall.
	crds := ofKind(objs, "CustomResourceDefinition")
	if len(crds) != 2 {
		t.Fatalf("%d CRDs rendered by default, want VaultIssuer and VaultClusterIssuer", len(crds))
	}
	for _, crd := range crds {
		if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
			t.Errorf("CRD %s: helm.sh/resource-policy %q, want keep", crd.GetName(), got)
		}
		if crd.GetLabels()["app.kubernetes.io/instance"] != "meshtrust" {
			t.Errorf("CRD %s lacks the release's labels: %v", crd.GetName(), crd.GetLabels())
		}
	}
	// The image's entrypoint runs the chart's args; a command here would
	// replace it.
	c := d.Spec.Template.Spec.Containers[0]
	if len(c.Command) != 0 {
		t.Errorf("the container sets command %q; the image's entrypoint must run", c.Command)
	}
	if want := "ghcr.io/meshtrust/meshtrust-controller:" + chartAppVersion(t); c.Image != want {
		t.Errorf("default image %q, want %q: the tag `make image` gives is the chart's appVersion", c.Image, want)
	}
}

// chartAppVersion reads appVersion from the chart's Chart.yaml.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(helm(t).RepoRoot, deploy.ChartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil || meta.AppVersion == "" {
		t.Fatalf("Chart.yaml: appVersion %q: %v", meta.AppVersion, err)
	}
	return meta.AppVersion
}

// TestRenderRBACShape checks, for every toggle, the properties of the
// granted RBAC that hold whatever the values: the lab tests then prove the
// grants work and that what is left out is refused.
func TestRenderRBACShape(t *testing.T) {
	for _, tg := range toggles {
		t.Run(tg.name, func(t *testing.T) {
			objs := render(t, "meshtrust", "meshtrust-system", tg.set...)
			for _, o := range objs {
				if o.GetNamespace() == "" && isNamespaced(o.GetKind()) {
					t.Errorf("%s %s has no namespace: kubectl apply of the manifests would put it in the wrong one", o.GetKind(), o.GetName())
				}
			}
			for _, u := range ofKind(objs, "ClusterRole") {
				cr := convert[rbacv1.ClusterRole](t, u)
				for _, r := range cr.Rules {
					checkNoWildcards(t, cr.Name, r)
					if slices.Contains(r.APIGroups, "") && (slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "serviceaccounts/token")) {
						t.Errorf("ClusterRole %s grants %v cluster-wide", cr.Name, r.Resources)
					}
					if slices.Contains(r.Resources, "signers") && !slices.Equal(r.ResourceNames, []string{"vaultclusterissuers.meshtrust.io/*"}) {
						t.Errorf("ClusterRole %s signs for %v", cr.Name, r.ResourceNames)
					}
				}
			}
			for _, u := range ofKind(objs, "Role") {
				r := convert[rbacv1.Role](t, u)
				for _, rule := range r.Rules {
					checkNoWildcards(t, r.Name, rule)
					writes := slices.ContainsFunc(rule.Verbs, func(v string) bool { return v == "update" || v == "patch" || v == "delete" })
					if slices.Contains(rule.Resources, "secrets") && writes && len(rule.ResourceNames) != 1 {
						t.Errorf("Role %s/%s writes Secrets without a single resourceName: %+v", r.Namespace, r.Name, rule)
					}
					if slices.Contains(rule.Resources, "serviceaccounts/token") && len(rule.ResourceNames) == 0 {
						t.Errorf("Role %s/%s mints tokens for any service account", r.Namespace, r.Name)
					}
					if slices.Contains(rule.Resources, "deployments") && len(rule.ResourceNames) == 0 {
						t.Errorf("Role %s/%s patches any Deployment", r.Namespace, r.Name)
					}
				}
			}
			// Every binding names the chart's ServiceAccount and nothing else.
			d := convert[appsv1.Deployment](t, ofKind(objs, "Deployment")[0])
			for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
				for _, u := range ofKind(objs, kind) {
					b := convert[rbacv1.RoleBinding](t, u)
					if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" ||
						b.Subjects[0].Name != d.Spec.Template.Spec.ServiceAccountName || b.Subjects[0].Namespace != "meshtrust-system" {
						t.Errorf("%s %s binds %+v", kind, b.Name, b.Subjects)
					}
				}
			}
		})
	}
}

func checkNoWildcards(t *testing.T, role string, r rbacv1.PolicyRule) {
	t.Helper()
	for _, list := range [][]string{r.Verbs, r.Resources, r.APIGroups} {
		if slices.Contains(list, "*") {
			t.Errorf("role %s has a wildcard rule %+v", role, r)
		}
	}
}

func isNamespaced(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Namespace":
		return false
	}
	return true
}

func TestRenderToggles(t *testing.T) {
	t.Run("issuer only drops the syncer's grants and flags", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "syncer.enabled=false")
		if find(objs, "Role", "istio-system", "meshtrust-controller-syncer-write") != nil || len(ofKind(objs, "ValidatingAdmissionPolicy")) != 0 {
			t.Error("syncer grants rendered with syncer.enabled=false")
		}
		args := containerArgs(t, objs)
		if !slices.Contains(args, "--enable-syncer=false") || slices.ContainsFunc(args, prefix("--syncer-")) {
			t.Errorf("args: %v", args)
		}
	})
	t.Run("syncer only drops the issuer's grants and flags", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "issuer.enabled=false")
		if find(objs, "ClusterRole", "", "meshtrust-controller-issuer") != nil || find(objs, "Role", "meshtrust-system", "meshtrust-controller-issuer") != nil {
			t.Error("issuer grants rendered with issuer.enabled=false")
		}
		args := containerArgs(t, objs)
		if !slices.Contains(args, "--enable-issuer=false") || slices.ContainsFunc(args, prefix("--issuer-")) {
			t.Errorf("args: %v", args)
		}
	})
	t.Run("no Kubernetes CSR support drops CSR and signer grants", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "issuer.kubernetesCSR=false")
		cr := convert[rbacv1.ClusterRole](t, find(objs, "ClusterRole", "", "meshtrust-controller-issuer"))
		for _, r := range cr.Rules {
			if slices.Contains(r.APIGroups, "certificates.k8s.io") {
				t.Errorf("CSR rule kept: %+v", r)
			}
		}
		if !slices.Contains(containerArgs(t, objs), "--issuer-disable-kubernetes-csr=true") {
			t.Error("controller not told to disable CSR signing")
		}
	})
	t.Run("no leader election drops the lease Role", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "replicaCount=1", "leaderElection.enabled=false", "podDisruptionBudget.enabled=false")
		if find(objs, "Role", "meshtrust-system", "meshtrust-controller-leader-election") != nil {
			t.Error("lease Role rendered without leader election")
		}
	})
	t.Run("restart option grants only the named Deployments", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system")
		if deploymentRule(t, objs) != nil {
			t.Error("Deployment access granted with the restart option off")
		}
		objs = render(t, "meshtrust", "meshtrust-system", "syncer.restartDeployments.enabled=true")
		r := deploymentRule(t, objs)
		if r == nil || !slices.Equal(r.ResourceNames, []string{"istiod"}) || !slices.Equal(r.Verbs, []string{"get", "patch"}) {
			t.Errorf("Deployment rule: %+v", r)
		}
	})
	t.Run("token minting follows vaultServiceAccounts into every issuer namespace", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "issuer.issuerNamespaces={team-a}", "issuer.vaultServiceAccounts={vault-auth}")
		for _, ns := range []string{"meshtrust-system", "team-a"} {
			r := convert[rbacv1.Role](t, find(objs, "Role", ns, "meshtrust-controller-issuer"))
			if !slices.ContainsFunc(r.Rules, func(p rbacv1.PolicyRule) bool {
				return slices.Equal(p.Resources, []string{"serviceaccounts/token"}) && slices.Equal(p.ResourceNames, []string{"vault-auth"})
			}) {
				t.Errorf("Role in %s: %+v", ns, r.Rules)
			}
		}
	})
	t.Run("CRDs follow crds.enabled and crds.keep", func(t *testing.T) {
		if n := len(ofKind(render(t, "meshtrust", "meshtrust-system", "crds.enabled=false"), "CustomResourceDefinition")); n != 0 {
			t.Errorf("%d CRDs rendered with crds.enabled=false", n)
		}
		crds := ofKind(render(t, "meshtrust", "meshtrust-system", "crds.keep=false"), "CustomResourceDefinition")
		if len(crds) != 2 {
			t.Fatalf("%d CRDs rendered, want 2", len(crds))
		}
		for _, crd := range crds {
			if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
				t.Errorf("CRD %s kept with crds.keep=false", crd.GetName())
			}
		}
	})
	t.Run("the rendered CRDs are controller-gen's", func(t *testing.T) {
		// Only metadata is added; the schema is what make generate wrote.
		for _, crd := range ofKind(render(t, "meshtrust", "meshtrust-system"), "CustomResourceDefinition") {
			data, err := os.ReadFile(filepath.Join(helm(t).RepoRoot, deploy.GeneratedCRDsDir, "meshtrust.io_"+strings.TrimSuffix(crd.GetName(), ".meshtrust.io")+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			gen, err := decodeObjects(data)
			if err != nil || len(gen) != 1 {
				t.Fatalf("decoding %s: %d objects, %v", crd.GetName(), len(gen), err)
			}
			if !equality.Semantic.DeepEqual(crd.Object["spec"], gen[0].Object["spec"]) {
				t.Errorf("CRD %s: the rendered spec differs from %s", crd.GetName(), deploy.GeneratedCRDsDir)
			}
		}
	})
	t.Run("alert rules and dashboard are opt-in objects", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=prometheus",
			"metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.namespace=monitoring")
		rule := find(objs, "PrometheusRule", "meshtrust-system", "meshtrust-controller")
		if rule == nil || rule.GetLabels()["release"] != "prometheus" {
			t.Errorf("PrometheusRule: %v", rule)
		}
		cm := find(objs, "ConfigMap", "monitoring", "meshtrust-dashboard")
		if cm == nil || cm.GetLabels()["grafana_dashboard"] != "1" {
			t.Fatalf("dashboard ConfigMap: %v", cm)
		}
		if data, _, _ := unstructured.NestedString(cm.Object, "data", "meshtrust-dashboard.json"); !strings.Contains(data, `"uid": "meshtrust"`) {
			t.Errorf("the ConfigMap does not hold the dashboard: %.200s", data)
		}
	})
	t.Run("service monitor selects the metrics service", func(t *testing.T) {
		objs := render(t, "meshtrust", "meshtrust-system", "metrics.serviceMonitor.enabled=true")
		sm := ofKind(objs, "ServiceMonitor")
		svc := find(objs, "Service", "meshtrust-system", "meshtrust-controller-metrics")
		if len(sm) != 1 || svc == nil {
			t.Fatalf("ServiceMonitor %d, Service %v", len(sm), svc != nil)
		}
		sel, _, _ := unstructured.NestedStringMap(sm[0].Object, "spec", "selector", "matchLabels")
		for k, v := range sel {
			if svc.GetLabels()[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, Service has %q", k, v, svc.GetLabels()[k])
			}
		}
	})
}

func containerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	return convert[appsv1.Deployment](t, ofKind(objs, "Deployment")[0]).Spec.Template.Spec.Containers[0].Args
}

func prefix(p string) func(string) bool {
	return func(s string) bool { return strings.HasPrefix(s, p) }
}

func deploymentRule(t *testing.T, objs []*unstructured.Unstructured) *rbacv1.PolicyRule {
	t.Helper()
	for _, u := range ofKind(objs, "Role") {
		for _, r := range convert[rbacv1.Role](t, u).Rules {
			if slices.Contains(r.Resources, "deployments") {
				return &r
			}
		}
	}
	return nil
}

// TestRenderRejectsBadValues proves values.schema.json and the chart's own
// checks stop a bad install before anything reaches the cluster, naming
// the value at fault.
func TestRenderRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"replicas=2"}, "additional properties 'replicas' not allowed"},
		{[]string{"issuer.vaultTimeout=30"}, "/issuer/vaultTimeout"},
		{[]string{"syncer.workloadCertTTL=0s"}, "/syncer/workloadCertTTL"},
		{[]string{"syncer.crlPropagationDelay=5"}, "/syncer/crlPropagationDelay"},
		{[]string{"issuer.crlRefreshInterval=-1m"}, "/issuer/crlRefreshInterval"},
		{[]string{"syncer.targetNamespaces={*}"}, "/syncer/targetNamespaces/0"},
		{[]string{"syncer.watchNamespaces=null"}, "missing property 'watchNamespaces'"},
		{[]string{"issuer.vaultServiceAccounts={Bad_Name}"}, "/issuer/vaultServiceAccounts/0"},
		{[]string{"image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{[]string{"extraArgs={leader-elect}"}, "/extraArgs/0"},
		{[]string{"issuer.enabled=false", "syncer.enabled=false"}, "nothing to run"},
		{[]string{"leaderElection.enabled=false"}, "needs leaderElection.enabled"},
		{[]string{"replicaCount=1"}, "no node could ever be drained"},
		{[]string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"}, "needs metrics.service.enabled"},
		{[]string{"crds.keep=sometimes"}, "/crds/keep"},
		{[]string{"metrics.grafanaDashboard.namespace=Not_A_Namespace"}, "/metrics/grafanaDashboard/namespace"},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			_, err := helm(t).Template(testCtx(t, time.Minute), "meshtrust", "meshtrust-system", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestManifestsUpToDate fails when deploy/manifests/meshtrust.yaml is not
// what `make manifests` renders now.
func TestManifestsUpToDate(t *testing.T) {
	h := helm(t)
	want, err := h.Run(testCtx(t, time.Minute), deploy.ManifestArgs()...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(h.RepoRoot, deploy.ManifestPath))
	if err != nil {
		t.Fatalf("%v (run `make manifests`)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `make manifests` and commit the result", deploy.ManifestPath)
	}
}

// TestChartCRDsUpToDate fails when the chart's crds/ differ from what
// controller-gen generates into deploy/crds.
func TestChartCRDsUpToDate(t *testing.T) {
	root := helm(t).RepoRoot
	read := func(dir string) map[string][]byte {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = b
		}
		return files
	}
	gen, chart := read(deploy.GeneratedCRDsDir), read(deploy.ChartCRDsDir)
	if len(gen) == 0 {
		t.Fatalf("no CRDs in %s", deploy.GeneratedCRDsDir)
	}
	for name, b := range gen {
		if !bytes.Equal(chart[name], b) {
			t.Errorf("%s/%s differs from %s/%s: run `make generate manifests`", deploy.ChartCRDsDir, name, deploy.GeneratedCRDsDir, name)
		}
	}
	for name := range chart {
		if _, ok := gen[name]; !ok {
			t.Errorf("%s/%s is not generated any more: run `make manifests`", deploy.ChartCRDsDir, name)
		}
	}
}
