package vaultadmin

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// AuthKind is how an enrolled cluster logs in to Vault.
type AuthKind string

const (
	// AuthKubernetes is a kubernetes auth mount per cluster, which checks the
	// controller's ServiceAccount token with that cluster's TokenReview API.
	AuthKubernetes AuthKind = "kubernetes"
	// AuthAppRole is a role in a shared AppRole mount, with a secret ID kept in
	// a Secret in the cluster.
	AuthAppRole AuthKind = "approle"
)

// KubernetesAuth configures a kubernetes auth mount and role.
type KubernetesAuth struct {
	// Host is the cluster's API server URL as Vault reaches it; empty means
	// EnrollOptions.Kube's.
	Host string
	// CACert is the PEM CA that verifies Host; empty means EnrollOptions.Kube's.
	CACert []byte
	// ReviewerJWT, when set, returns the reviewer token Vault stores to call
	// TokenReview (--reviewer-jwt-file). When nil, enrol mints one in the
	// cluster for the ServiceAccount
	// ReviewerNamespace/ReviewerName, bound to system:auth-delegator,
	// creating both if needed, and records its expiry on that
	// ServiceAccount, where status reads it. Either is used only when the
	// mount's configuration has to be (re)written, so that a second run
	// mints nothing until the token is within
	// vaultcontract.ReviewerTokenRenewBefore of its expiry.
	ReviewerJWT func(ctx context.Context) (jwt string, expires time.Time, err error)
	// ReviewerNamespace and ReviewerName name the token-reviewer ServiceAccount.
	ReviewerNamespace, ReviewerName string
	// ReviewerTTL is the lifetime asked for a minted reviewer token.
	ReviewerTTL time.Duration
	// RefreshReviewer forces a new reviewer token even if the mount is configured.
	RefreshReviewer bool
	// ServiceAccount is the controller's ServiceAccount name the role is bound to.
	ServiceAccount string
	// Namespace is that ServiceAccount's namespace.
	Namespace string
	// Audience is the audience the controller's projected token carries;
	// empty means the VaultClusterIssuer's default.
	Audience string
}

// AppRoleAuth configures an AppRole role and where its secret ID goes.
type AppRoleAuth struct {
	// SecretIDTTL bounds each secret ID's life; 0 means it never expires.
	SecretIDTTL time.Duration
	// SecretNamespace and SecretName name the Secret (key secret-id) the
	// issuer reads the secret ID from; enrol writes it when it has Kube.
	SecretNamespace, SecretName string
	// SecretIDFile, when set, is where the secret ID goes instead (mode 0600).
	SecretIDFile string
}

// secretIDKey is the Secret key the issuer's appRole.secretRef names.
const secretIDKey = "secret-id"

// EnrollOptions is everything enrolling one cluster writes: in Vault, in the
// cluster, and in the manifests the cluster applies.
type EnrollOptions struct {
	// Cluster is the cluster's name, a DNS label; the policy, role and auth
	// mount are named after it.
	Cluster string
	// TrustDomain is the cluster's SPIFFE trust domain, the only one it may
	// sign for.
	TrustDomain string
	// Mount and IssuerRef select the PKI mount and the issuer that signs.
	Mount, IssuerRef string
	// CommonName is the only CN the cluster may request; empty means
	// vaultcontract.IntermediateCommonName.
	CommonName string
	// PolicyName, Role and AuthMount default to vaultcontract's names.
	PolicyName, Role, AuthMount string
	// Auth selects the auth method.
	Auth AuthKind
	// TokenTTL and TokenMaxTTL bound the tokens a login returns; the issuer
	// renews and re-logs in, so these can be short.
	TokenTTL, TokenMaxTTL time.Duration
	// Kubernetes is used when Auth is AuthKubernetes.
	Kubernetes KubernetesAuth
	// AppRole is used when Auth is AuthAppRole.
	AppRole AppRoleAuth
	// Kube reaches the cluster (its kube context); nil when enrol has none,
	// and then nothing is written in the cluster.
	Kube *rest.Config
	// Manifests shape the objects the cluster applies.
	Manifests ManifestSettings
	// Now is the current time, to judge a stored secret ID's expiry.
	Now time.Time
}

// ManifestSettings are the manifests' own settings; the rest comes from
// EnrollOptions.
type ManifestSettings struct {
	// ClusterIssuerName names the VaultClusterIssuer.
	ClusterIssuerName string
	// Server is Vault's address as the cluster reaches it; empty means the
	// address enrol reached Vault by.
	Server string
	// VaultNamespace is the Vault Enterprise namespace; empty for none.
	VaultNamespace string
	// CABundle is the PEM CA that verifies Vault's TLS certificate.
	CABundle []byte
	// CertificateName and CertificateNamespace place the Certificate.
	CertificateName, CertificateNamespace string
	// SecretName is where cert-manager writes the intermediate.
	SecretName string
	// Duration and RenewBefore set the intermediate's lifetime and when
	// cert-manager renews it.
	Duration, RenewBefore time.Duration
}

// Default fills every name left empty with vaultcontract's.
func (o *EnrollOptions) Default() {
	defaultNames(o.Cluster, o.Auth, &o.Mount, &o.CommonName, &o.PolicyName, &o.Role, &o.AuthMount)
	if o.Kubernetes.Audience == "" {
		o.Kubernetes.Audience = vaultcontract.ClusterIssuerAudience(o.Manifests.ClusterIssuerName)
	}
}

// defaultNames fills each name left empty with the one enrol gives the
// cluster's objects, so that unenrol finds what enrol made.
func defaultNames(cluster string, auth AuthKind, mount, commonName, policy, role, authMount *string) {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(mount, vaultcontract.DefaultMount)
	set(commonName, vaultcontract.IntermediateCommonName(cluster))
	set(policy, vaultcontract.PolicyName(cluster))
	set(role, vaultcontract.RoleName(cluster))
	if auth == AuthKubernetes {
		set(authMount, vaultcontract.KubernetesAuthMount(cluster))
	}
	set(authMount, vaultcontract.AppRoleAuthMount)
}

// Validate checks the options before anything is sent to Vault.
func (o EnrollOptions) Validate() error {
	if err := vaultcontract.ValidateClusterName(o.Cluster); err != nil {
		return err
	}
	if err := vaultcontract.ValidateTrustDomain(o.TrustDomain); err != nil {
		return err
	}
	m := o.Manifests
	switch {
	case o.Mount == "":
		return fmt.Errorf("invalid --mount: empty")
	case o.CommonName == "" || strings.ContainsAny(o.CommonName, ",*"):
		return fmt.Errorf("invalid --common-name %q: must be non-empty, without commas or wildcards", o.CommonName)
	case o.PolicyName == "" || o.Role == "" || o.AuthMount == "":
		return fmt.Errorf("policy name, role and auth mount must be set")
	case m.RenewBefore >= m.Duration:
		return fmt.Errorf("invalid --renew-before %s: must be shorter than --duration %s", m.RenewBefore, m.Duration)
	}
	switch o.Auth {
	case AuthKubernetes:
		k := o.Kubernetes
		switch {
		case k.Host == "" && o.Kube == nil:
			return fmt.Errorf("kubernetes auth needs the cluster's API server URL (--context or --kubernetes-host)")
		case len(k.CACert) == 0 && o.Kube == nil:
			return fmt.Errorf("kubernetes auth needs the cluster's CA certificate (--context or --kubernetes-ca-file)")
		case k.ServiceAccount == "" || k.Namespace == "":
			return fmt.Errorf("kubernetes auth needs the controller's ServiceAccount name and namespace")
		}
	case AuthAppRole:
	default:
		return fmt.Errorf("invalid --auth %q: want kubernetes or approle", o.Auth)
	}
	return nil
}

// Policy is what the cluster may sign: the policy enrol writes.
func (o EnrollOptions) Policy() vaultcontract.Policy {
	return vaultcontract.Policy{Cluster: o.Cluster, Mount: o.Mount, IssuerRef: o.IssuerRef, TrustDomain: o.TrustDomain, CommonName: o.CommonName}
}

// ManifestOptions are the manifests the cluster applies, for an AppRole
// role ID (ignored for kubernetes auth) and the Vault address enrol used.
func (o EnrollOptions) ManifestOptions(roleID, vaultAddr string) ManifestOptions {
	m := o.Manifests
	mo := ManifestOptions{
		ClusterIssuerName: m.ClusterIssuerName, Server: m.Server, VaultNamespace: m.VaultNamespace, CABundle: m.CABundle,
		Mount: o.Mount, IssuerRef: o.IssuerRef, TrustDomain: o.TrustDomain,
		CertificateName: m.CertificateName, CertificateNamespace: m.CertificateNamespace, SecretName: m.SecretName,
		CommonName: o.CommonName, Duration: m.Duration, RenewBefore: m.RenewBefore,
	}
	if mo.Server == "" {
		mo.Server = vaultAddr
	}
	switch o.Auth {
	case AuthKubernetes:
		mo.Kubernetes = &v1alpha1.KubernetesAuth{MountPath: o.AuthMount, Role: o.Role,
			ServiceAccountRef: v1alpha1.ServiceAccountRef{Name: o.Kubernetes.ServiceAccount}}
		if o.Kubernetes.Audience != vaultcontract.ClusterIssuerAudience(m.ClusterIssuerName) {
			mo.Kubernetes.ServiceAccountRef.Audiences = []string{o.Kubernetes.Audience}
		}
	case AuthAppRole:
		mo.AppRole = &v1alpha1.AppRoleAuth{MountPath: o.AuthMount, RoleID: roleID,
			SecretRef: v1alpha1.SecretKeySelector{Name: o.AppRole.SecretName, Key: secretIDKey}}
	}
	return mo
}

// EnrollPlan is what Enroll will do.
type EnrollPlan struct {
	Plan
	// Manifests are what the cluster will apply; an AppRole role that does
	// not exist yet has the role ID KnownAfterApply.
	Manifests ManifestOptions `json:"-"`

	roleID *string
}

// EnrollResult is what Enroll did.
type EnrollResult struct {
	Result
	// RoleID is the AppRole role ID (not a secret on its own); empty for kubernetes.
	RoleID string `json:"roleID,omitempty"`
	// Manifests are what the cluster applies.
	Manifests ManifestOptions `json:"-"`
}

// Enroll plans and applies in one go.
func Enroll(ctx context.Context, c *Client, o EnrollOptions) (*EnrollResult, error) {
	return planThenApply(PlanEnroll(ctx, c, o))(ctx)
}

// Apply carries the plan out.
func (p *EnrollPlan) Apply(ctx context.Context) (*EnrollResult, error) {
	steps, err := p.apply(ctx)
	if err != nil {
		return nil, err
	}
	mo := p.Manifests
	if mo.AppRole != nil {
		mo.AppRole.RoleID = *p.roleID
	}
	return &EnrollResult{Result: resultOf(steps), RoleID: *p.roleID, Manifests: mo}, nil
}

// PlanEnroll is the one function that owns enrolling a cluster. It reads
// Vault and the cluster and plans, in order: the cluster's policy (what it
// may sign), its CRL exchange entry (planCRLEntry), its auth mount, and for kubernetes auth the token reviewer
// (ServiceAccount and binding in the cluster), the mount's configuration
// and the role; for AppRole the role and a secret ID stored in the cluster
// or a file. It refuses, before planning any write, an issuer that does not
// exist, an auth mount that is not the cluster's, and a --duration the
// mount would cut. It changes nothing.
func PlanEnroll(ctx context.Context, c *Client, o EnrollOptions) (*EnrollPlan, error) {
	o.Default()
	var cs kubernetes.Interface
	if o.Kube != nil {
		var err error
		if cs, err = kubernetes.NewForConfig(o.Kube); err != nil {
			return nil, fmt.Errorf("clientset for %s: %w", o.Kube.Host, err)
		}
		if err := o.kubernetesFromCluster(); err != nil {
			return nil, err
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := checkDuration(ctx, c, o.Mount, o.Manifests.Duration); err != nil {
		return nil, err
	}
	if err := checkOverlap(ctx, c, o); err != nil {
		return nil, err
	}
	if _, err := readIssuerForPolicy(ctx, c, o.Policy()); err != nil {
		return nil, err
	}
	// Refuse a mount that is not the cluster's before planning anything, so
	// that a refused enroll changes nothing.
	mounted, err := checkAuthMount(ctx, c, o)
	if err != nil {
		return nil, err
	}
	p := &EnrollPlan{Plan: Plan{Operation: "enroll"}, roleID: new(string)}
	if err := p.planPolicy(ctx, c, o.PolicyName, o.Policy()); err != nil {
		return nil, err
	}
	if err := planCRLEntry(ctx, &p.Plan, c, o.Cluster, o.TrustDomain); err != nil {
		return nil, err
	}
	p.planAuthMount(c, o, mounted)
	switch o.Auth {
	case AuthKubernetes:
		err = p.planKubernetes(ctx, c, cs, o, mounted)
	case AuthAppRole:
		err = p.planAppRole(ctx, c, cs, o, mounted)
	}
	if err != nil {
		return nil, err
	}
	roleID := *p.roleID
	if o.Auth == AuthAppRole && roleID == "" {
		roleID = KnownAfterApply
	}
	p.Manifests = o.ManifestOptions(roleID, c.Addr)
	return p, nil
}

// kubernetesFromCluster takes the API server URL and CA the flags left
// empty from the cluster's kube context.
func (o *EnrollOptions) kubernetesFromCluster() error {
	k := &o.Kubernetes
	if o.Auth != AuthKubernetes {
		return nil
	}
	if k.Host == "" {
		k.Host = o.Kube.Host
	}
	if len(k.CACert) == 0 {
		cfg := rest.CopyConfig(o.Kube)
		if err := rest.LoadTLSFiles(cfg); err != nil {
			return fmt.Errorf("reading the context's CA file: %w", err)
		}
		k.CACert = cfg.CAData
	}
	return nil
}

// checkDuration refuses a Certificate duration the mount would silently cut.
func checkDuration(ctx context.Context, c *Client, mount string, d time.Duration) error {
	max, err := MountMaxTTL(ctx, c, mount)
	if err != nil {
		return err
	}
	if max > 0 && d > max {
		return fmt.Errorf("invalid --duration %s: mount %s/ caps intermediates at %s, so cert-manager would get a shorter certificate than it asked for", Dur(d), mount, Dur(max))
	}
	return nil
}

// readIssuerForPolicy fails early, with a clear reason, when the issuer the
// policy names does not exist (for example, bootstrap has not run).
func readIssuerForPolicy(ctx context.Context, c *Client, p vaultcontract.Policy) (*RootInfo, error) {
	ref := p.IssuerRef
	if ref == "" {
		ref = "default"
	}
	info, err := readIssuer(ctx, c, p.Mount, ref)
	if isNotFound(err) {
		return nil, fmt.Errorf("vault at %s: no issuer %q in %s/: run `meshtrust vault bootstrap` first or pass --issuer-ref", c.Addr, ref, p.Mount)
	}
	return info, err
}

func (p *EnrollPlan) planPolicy(ctx context.Context, c *Client, name string, pol vaultcontract.Policy) error {
	rules := pol.HCL()
	current, err := c.API.Sys().GetPolicyWithContext(ctx, name)
	if err != nil && !IsStatus(err, 404) {
		return wrap(c.Addr, "reading policy "+name, err)
	}
	step := "policy " + name
	after := fmt.Sprintf("update on %s: trust domain %s, CN %q, max_path_length 0", pol.SignPath(), pol.TrustDomain, pol.CommonName)
	if strings.TrimSpace(current) == strings.TrimSpace(rules) {
		p.check(step, SystemVault, "already as wanted")
		return nil
	}
	verb, before := "written", Absent
	if current != "" {
		verb, before = "updated", policySummary(current)
	}
	p.change(Step{Name: step, System: SystemVault, Detail: verb, Before: before, After: after},
		func(ctx context.Context, _ *Step) error {
			return wrap(c.Addr, "writing policy "+name, c.API.Sys().PutPolicyWithContext(ctx, name, rules))
		})
	return nil
}

// policySummary names the sign paths a policy it is about to replace
// grants, for the plan's Before.
func policySummary(text string) string {
	var paths []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "path ") && strings.Contains(line, "sign") {
			paths = append(paths, strings.Trim(strings.TrimSuffix(strings.TrimPrefix(line, "path "), "{"), "\" "))
		}
	}
	if len(paths) == 0 {
		return "a policy granting no sign path"
	}
	return "a different policy on " + strings.Join(paths, ", ")
}

// checkAuthMount reports whether o.AuthMount exists, and refuses one enroll
// must not touch: a mount of another type, or a kubernetes mount that enroll
// did not create for this cluster, whose configuration (API server, CA and
// reviewer token) enroll would otherwise overwrite.
func checkAuthMount(ctx context.Context, c *Client, o EnrollOptions) (bool, error) {
	auths, err := c.API.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return false, wrap(c.Addr, "listing auth methods", err)
	}
	m, ok := auths[o.AuthMount+"/"]
	if !ok {
		return false, nil
	}
	if why := authMountProblem(m, o.Auth, o.Cluster, o.Auth == AuthKubernetes); why != "" {
		return true, &NotOwnedError{Addr: c.Addr, Mount: o.AuthMount, Action: "reconfigure", Reason: why + "; pass an --auth-mount that does not exist yet"}
	}
	return true, nil
}

// planAuthMount plans to enable the auth mount unless checkAuthMount found it.
func (p *EnrollPlan) planAuthMount(c *Client, o EnrollOptions, mounted bool) {
	kind, mount := string(o.Auth), o.AuthMount
	name := "auth mount " + mount + "/"
	if mounted {
		p.check(name, SystemVault, "%s auth already enabled", kind)
		return
	}
	desc := authMountDescription(o.Auth, o.Cluster)
	p.change(Step{Name: name, System: SystemVault, Detail: kind + " auth enabled", Before: Absent, After: fmt.Sprintf("%s auth, description %q", kind, desc)},
		func(ctx context.Context, _ *Step) error {
			in := &vaultapi.EnableAuthOptions{Type: kind, Description: desc}
			return wrap(c.Addr, "enabling "+kind+" auth at auth/"+mount, c.API.Sys().EnableAuthWithOptionsWithContext(ctx, mount, in))
		})
}

func (p *EnrollPlan) planKubernetes(ctx context.Context, c *Client, cs kubernetes.Interface, o EnrollOptions, mounted bool) error {
	k := o.Kubernetes
	cfgPath := "auth/" + o.AuthMount + "/config"
	var cur authConfig
	if mounted {
		s, err := c.read(ctx, "reading "+cfgPath, cfgPath)
		if err != nil {
			return err
		}
		if s != nil && s.Data != nil {
			cur = authConfig{
				host:     fmt.Sprint(s.Data["kubernetes_host"]),
				pointsAt: s.Data["kubernetes_host"] == k.Host && strings.TrimSpace(fmt.Sprint(s.Data["kubernetes_ca_cert"])) == strings.TrimSpace(string(k.CACert)),
				tokenSet: s.Data["token_reviewer_jwt_set"] == true,
			}
		}
	}
	if err := p.planReviewerToken(ctx, c, cs, o, cfgPath, mounted, cur); err != nil {
		return err
	}
	want := map[string]any{
		"bound_service_account_names":      []string{k.ServiceAccount},
		"bound_service_account_namespaces": []string{k.Namespace},
		"token_policies":                   []string{o.PolicyName},
		"token_ttl":                        int(o.TokenTTL / time.Second),
		"token_max_ttl":                    int(o.TokenMaxTTL / time.Second),
	}
	if k.Audience != "" {
		want["audience"] = k.Audience
	}
	_, err := p.planRole(ctx, c, "auth/"+o.AuthMount+"/role/"+o.Role, want, mounted)
	return err
}

func (p *EnrollPlan) planAppRole(ctx context.Context, c *Client, cs kubernetes.Interface, o EnrollOptions, mounted bool) error {
	rolePath := "auth/" + o.AuthMount + "/role/" + o.Role
	want := map[string]any{
		"token_policies":     []string{o.PolicyName},
		"token_ttl":          int(o.TokenTTL / time.Second),
		"token_max_ttl":      int(o.TokenMaxTTL / time.Second),
		"bind_secret_id":     true,
		"secret_id_ttl":      int(o.AppRole.SecretIDTTL / time.Second),
		"secret_id_num_uses": 0,
	}
	exists, err := p.planRole(ctx, c, rolePath, want, mounted)
	if err != nil {
		return err
	}
	readRoleID := func(ctx context.Context) error {
		s, err := c.read(ctx, "reading the role ID of "+rolePath, rolePath+"/role-id")
		if err != nil {
			return err
		}
		if s != nil {
			*p.roleID, _ = s.Data["role_id"].(string)
		}
		if *p.roleID == "" {
			return fmt.Errorf("vault at %s: %s has no role ID", c.Addr, rolePath)
		}
		return nil
	}
	if exists {
		if err := readRoleID(ctx); err != nil {
			return err
		}
	} else {
		// The role ID exists once the role does.
		p.Steps[len(p.Steps)-1].run = chain(p.Steps[len(p.Steps)-1].run, func(ctx context.Context, _ *Step) error { return readRoleID(ctx) })
	}
	return p.planSecretID(ctx, c, cs, o, exists)
}

// chain runs a, then b.
func chain(a, b func(context.Context, *Step) error) func(context.Context, *Step) error {
	return func(ctx context.Context, s *Step) error {
		if err := a(ctx, s); err != nil {
			return err
		}
		return b(ctx, s)
	}
}

// planSecretID plans to mint an AppRole secret ID only when none is stored
// yet (in a file: none that Vault still accepts), so that a second enroll
// changes nothing and leaves no extra valid secret ID behind, and to put it
// where the issuer reads it. The value goes nowhere else.
func (p *EnrollPlan) planSecretID(ctx context.Context, c *Client, cs kubernetes.Interface, o EnrollOptions, roleExists bool) error {
	a := o.AppRole
	const name = "AppRole secret ID"
	mint := func(ctx context.Context) (string, error) { return GenerateSecretID(ctx, c, o.AuthMount, o.Role) }
	switch {
	case a.SecretIDFile != "":
		return p.planSecretIDFile(ctx, c, o, roleExists, mint)
	case cs != nil:
		ref := a.SecretNamespace + "/" + a.SecretName
		has, err := secretHasKey(ctx, cs, a.SecretNamespace, a.SecretName, secretIDKey)
		if err != nil {
			return err
		}
		if has {
			p.check(name, SystemKubernetes, "Secret %s already holds one", ref)
			return nil
		}
		p.change(Step{Name: name, System: SystemVault + "+" + SystemKubernetes, Detail: "new secret ID stored in Secret " + ref,
			Before: "Secret " + ref + " holds no " + secretIDKey, After: "Secret " + ref + " holds a new secret ID (value never shown)"},
			func(ctx context.Context, _ *Step) error {
				id, err := mint(ctx)
				if err != nil {
					return err
				}
				return writeSecretKey(ctx, cs, a.SecretNamespace, a.SecretName, secretIDKey, []byte(id))
			})
		return nil
	}
	p.check(name, SystemVault, "not generated: pass --context or --secret-id-file, or store one in Secret %s/%s (key %s) yourself", a.SecretNamespace, a.SecretName, secretIDKey)
	return nil
}

// planRole plans to write the role unless every wanted field already has
// the wanted value, and says whether the role exists.
func (p *EnrollPlan) planRole(ctx context.Context, c *Client, path string, want map[string]any, mounted bool) (bool, error) {
	var s *vaultapi.Secret
	if mounted {
		var err error
		s, err = c.read(ctx, "reading "+path, path)
		if err != nil && !IsStatus(err, 404) {
			return false, err
		}
	}
	exists := s != nil
	if exists && s.Data != nil && sameFields(s.Data, want) {
		p.check(path, SystemVault, "already as wanted")
		return true, nil
	}
	verb, before := "created", Absent
	if exists {
		verb, before = "updated", fieldsString(s.Data, want)
	}
	p.change(Step{Name: path, System: SystemVault, Detail: verb, Before: before, After: fieldsString(want, want)},
		func(ctx context.Context, _ *Step) error {
			_, err := c.write(ctx, "writing "+path, path, want)
			return err
		})
	return exists, nil
}

// fieldsString prints have's values of want's keys, sorted, for Before and
// After.
func fieldsString(have, want map[string]any) string {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + norm(have[k])
	}
	return strings.Join(parts, " ")
}

// GenerateSecretID mints a new AppRole secret ID. The caller stores it (in a
// Secret or a file) and must never print it.
func GenerateSecretID(ctx context.Context, c *Client, authMount, role string) (string, error) {
	path := "auth/" + authMount + "/role/" + role + "/secret-id"
	s, err := c.write(ctx, "generating a secret ID for auth/"+authMount+"/role/"+role, path, map[string]any{
		"metadata": `{"created-by":"meshtrust"}`,
	})
	if err != nil {
		return "", err
	}
	id, _ := s.Data["secret_id"].(string)
	if id == "" {
		return "", fmt.Errorf("vault at %s: no secret ID in the response for auth/%s/role/%s", c.Addr, authMount, role)
	}
	return id, nil
}

// SecretIDLive reports whether id is a secret ID of the role that Vault
// still accepts, so that enroll can keep it instead of minting another one
// that never expires. The caller must never print id.
func SecretIDLive(ctx context.Context, c *Client, authMount, role, id string, now time.Time) (bool, error) {
	rolePath := "auth/" + authMount + "/role/" + role
	s, err := c.write(ctx, "looking up the stored secret ID in "+rolePath, rolePath+"/secret-id/lookup", map[string]any{"secret_id": id})
	if IsStatus(err, 404) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return s != nil && secretIDUnexpired(s.Data, now), nil
}

// secretIDUnexpired reads a secret-id/lookup answer. Vault answers for an
// expired secret ID until its tidy runs, so the expiry is checked here.
func secretIDUnexpired(data map[string]any, now time.Time) bool {
	if data == nil {
		return false
	}
	text, _ := data["expiration_time"].(string)
	exp, err := time.Parse(time.RFC3339Nano, text)
	switch {
	case err != nil:
		return false
	case exp.IsZero():
		// Vault's zero time: the secret ID never expires.
		return true
	}
	return now.Before(exp)
}

// sameFields compares the fields we set with what Vault returns, in their
// printed forms, since Vault returns json.Numbers and []any.
func sameFields(have, want map[string]any) bool {
	for k, w := range want {
		if norm(have[k]) != norm(w) {
			return false
		}
	}
	return true
}

func norm(v any) string {
	switch t := v.(type) {
	case []string:
		s := append([]string(nil), t...)
		sort.Strings(s)
		return strings.Join(s, ",")
	case []any:
		return norm(stringList(t))
	case nil:
		return ""
	}
	var b bytes.Buffer
	fmt.Fprint(&b, v)
	return b.String()
}
