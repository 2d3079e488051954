package vaultops

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
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
	// Host is the cluster's API server URL as Vault reaches it.
	Host string
	// CACert is the PEM CA that verifies Host.
	CACert []byte
	// ReviewerJWT returns a token Vault uses to call TokenReview. It is only
	// called when the mount's configuration has to be (re)written, so that a
	// second run mints nothing.
	ReviewerJWT func(ctx context.Context) (jwt string, expires time.Time, err error)
	// RefreshReviewer forces a new reviewer token even if the mount is configured.
	RefreshReviewer bool
	// ServiceAccount is the controller's ServiceAccount name the role is bound to.
	ServiceAccount string
	// Namespace is that ServiceAccount's namespace.
	Namespace string
	// Audience is the audience the controller's projected token carries; empty
	// means the API server's default audience.
	Audience string
}

// AppRoleAuth configures an AppRole role.
type AppRoleAuth struct {
	// SecretIDTTL bounds each secret ID's life; 0 means it never expires.
	SecretIDTTL time.Duration
}

// EnrollOptions is everything enroll writes to Vault for one cluster.
type EnrollOptions struct {
	// Policy is what the cluster may do.
	Policy PolicyOptions
	// PolicyName names the Vault policy.
	PolicyName string
	// Auth selects the auth method.
	Auth AuthKind
	// AuthMount is the auth mount path without "auth/", e.g. "kubernetes-east".
	AuthMount string
	// Role names the role in AuthMount.
	Role string
	// TokenTTL and TokenMaxTTL bound the tokens a login returns; the issuer
	// renews and re-logs in, so these can be short.
	TokenTTL, TokenMaxTTL time.Duration
	// Kubernetes is used when Auth is AuthKubernetes.
	Kubernetes KubernetesAuth
	// AppRole is used when Auth is AuthAppRole.
	AppRole AppRoleAuth
}

// Validate checks the options before anything is sent to Vault.
func (o EnrollOptions) Validate() error {
	if err := ValidateClusterName(o.Policy.Cluster); err != nil {
		return err
	}
	if err := ValidateTrustDomain(o.Policy.TrustDomain); err != nil {
		return err
	}
	switch {
	case o.Policy.Mount == "":
		return fmt.Errorf("invalid --mount: empty")
	case o.Policy.CommonName == "" || strings.ContainsAny(o.Policy.CommonName, ",*"):
		return fmt.Errorf("invalid --common-name %q: must be non-empty, without commas or wildcards", o.Policy.CommonName)
	case o.PolicyName == "" || o.Role == "" || o.AuthMount == "":
		return fmt.Errorf("policy name, role and auth mount must be set")
	}
	switch o.Auth {
	case AuthKubernetes:
		k := o.Kubernetes
		switch {
		case k.Host == "":
			return fmt.Errorf("kubernetes auth needs the cluster's API server URL (--context or --kubernetes-host)")
		case len(k.CACert) == 0:
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

// EnrollResult is what Enroll did.
type EnrollResult struct {
	// Steps lists every check in order.
	Steps []Step `json:"steps"`
	// Changed is true if any step changed something.
	Changed bool `json:"changed"`
	// RoleID is the AppRole role ID (not a secret on its own); empty for kubernetes.
	RoleID string `json:"roleID,omitempty"`
	// VaultVersion is the server's version, for the name-constraint check.
	VaultVersion string `json:"vaultVersion,omitempty"`
}

func (r *EnrollResult) step(name string, changed bool, format string, args ...any) {
	r.Steps = append(r.Steps, Step{Name: name, Changed: changed, Detail: fmt.Sprintf(format, args...)})
	r.Changed = r.Changed || changed
}

// Enroll writes the cluster's policy, auth mount and role, idempotently.
func Enroll(ctx context.Context, c *Client, o EnrollOptions) (*EnrollResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	res := &EnrollResult{}
	if _, err := readIssuerForPolicy(ctx, c, o.Policy); err != nil {
		return nil, err
	}
	// Refuse a mount that is not the cluster's before writing anything, so
	// that a refused enroll changes nothing.
	mounted, err := checkAuthMount(ctx, c, o)
	if err != nil {
		return nil, err
	}
	if err := ensurePolicy(ctx, c, o.PolicyName, RenderPolicy(o.Policy), res); err != nil {
		return nil, err
	}
	if err := ensureAuthMount(ctx, c, o, mounted, res); err != nil {
		return nil, err
	}
	switch o.Auth {
	case AuthKubernetes:
		err = ensureKubernetes(ctx, c, o, res)
	case AuthAppRole:
		err = ensureAppRole(ctx, c, o, res)
	}
	return res, err
}

// readIssuerForPolicy fails early, with a clear reason, when the issuer the
// policy names does not exist (for example, bootstrap has not run).
func readIssuerForPolicy(ctx context.Context, c *Client, p PolicyOptions) (*RootInfo, error) {
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

func ensurePolicy(ctx context.Context, c *Client, name, rules string, res *EnrollResult) error {
	current, err := c.API.Sys().GetPolicyWithContext(ctx, name)
	if err != nil && !IsStatus(err, 404) {
		return wrap(c.Addr, "reading policy "+name, err)
	}
	if strings.TrimSpace(current) == strings.TrimSpace(rules) {
		res.step("policy "+name, false, "already as wanted")
		return nil
	}
	if err := c.API.Sys().PutPolicyWithContext(ctx, name, rules); err != nil {
		return wrap(c.Addr, "writing policy "+name, err)
	}
	verb := "written"
	if current != "" {
		verb = "updated"
	}
	res.step("policy "+name, true, "%s", verb)
	return nil
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
	if why := authMountProblem(m, o.Auth, o.Policy.Cluster, o.Auth == AuthKubernetes); why != "" {
		return true, &NotOwnedError{Addr: c.Addr, Mount: o.AuthMount, Action: "reconfigure", Reason: why + "; pass an --auth-mount that does not exist yet"}
	}
	return true, nil
}

// ensureAuthMount enables the auth mount unless checkAuthMount found it.
func ensureAuthMount(ctx context.Context, c *Client, o EnrollOptions, mounted bool, res *EnrollResult) error {
	kind, mount := string(o.Auth), o.AuthMount
	name := "auth mount " + mount + "/"
	if mounted {
		res.step(name, false, "%s auth already enabled", kind)
		return nil
	}
	in := &vaultapi.EnableAuthOptions{Type: kind, Description: authMountDescription(o.Auth, o.Policy.Cluster)}
	if err := c.API.Sys().EnableAuthWithOptionsWithContext(ctx, mount, in); err != nil {
		return wrap(c.Addr, "enabling "+kind+" auth at auth/"+mount, err)
	}
	res.step(name, true, "%s auth enabled", kind)
	return nil
}

func ensureKubernetes(ctx context.Context, c *Client, o EnrollOptions, res *EnrollResult) error {
	k := o.Kubernetes
	cfgPath := "auth/" + o.AuthMount + "/config"
	s, err := c.read(ctx, "reading "+cfgPath, cfgPath)
	if err != nil {
		return err
	}
	configured := s != nil && s.Data != nil &&
		s.Data["kubernetes_host"] == k.Host &&
		strings.TrimSpace(fmt.Sprint(s.Data["kubernetes_ca_cert"])) == strings.TrimSpace(string(k.CACert)) &&
		s.Data["token_reviewer_jwt_set"] == true
	if configured && !k.RefreshReviewer {
		res.step(cfgPath, false, "already points at %s", k.Host)
	} else {
		if k.ReviewerJWT == nil {
			return fmt.Errorf("kubernetes auth at %s needs a reviewer token (--context or --reviewer-jwt-file)", o.AuthMount)
		}
		jwt, expires, err := k.ReviewerJWT(ctx)
		if err != nil {
			return fmt.Errorf("getting a token reviewer token: %w", err)
		}
		if _, err := c.write(ctx, "configuring "+cfgPath, cfgPath, map[string]any{
			"kubernetes_host":    k.Host,
			"kubernetes_ca_cert": string(k.CACert),
			"token_reviewer_jwt": jwt,
			// Vault runs outside the cluster: never fall back to a local
			// service-account token or CA file.
			"disable_local_ca_jwt": true,
		}); err != nil {
			return err
		}
		until := "no known expiry"
		if !expires.IsZero() {
			until = "expires " + expires.UTC().Format(time.RFC3339) + "; rerun with --refresh-reviewer-token before then"
		}
		res.step(cfgPath, true, "points at %s with a fresh reviewer token (%s)", k.Host, until)
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
	return ensureRole(ctx, c, "auth/"+o.AuthMount+"/role/"+o.Role, want, res)
}

func ensureAppRole(ctx context.Context, c *Client, o EnrollOptions, res *EnrollResult) error {
	rolePath := "auth/" + o.AuthMount + "/role/" + o.Role
	want := map[string]any{
		"token_policies":     []string{o.PolicyName},
		"token_ttl":          int(o.TokenTTL / time.Second),
		"token_max_ttl":      int(o.TokenMaxTTL / time.Second),
		"bind_secret_id":     true,
		"secret_id_ttl":      int(o.AppRole.SecretIDTTL / time.Second),
		"secret_id_num_uses": 0,
	}
	if err := ensureRole(ctx, c, rolePath, want, res); err != nil {
		return err
	}
	s, err := c.read(ctx, "reading the role ID of "+rolePath, rolePath+"/role-id")
	if err != nil {
		return err
	}
	if s != nil {
		res.RoleID, _ = s.Data["role_id"].(string)
	}
	if res.RoleID == "" {
		return fmt.Errorf("vault at %s: %s has no role ID", c.Addr, rolePath)
	}
	return nil
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

// ensureRole writes the role unless every wanted field already has the
// wanted value.
func ensureRole(ctx context.Context, c *Client, path string, want map[string]any, res *EnrollResult) error {
	s, err := c.read(ctx, "reading "+path, path)
	if err != nil && !IsStatus(err, 404) {
		return err
	}
	if s != nil && s.Data != nil && sameFields(s.Data, want) {
		res.step(path, false, "already as wanted")
		return nil
	}
	if _, err := c.write(ctx, "writing "+path, path, want); err != nil {
		return err
	}
	verb := "created"
	if s != nil {
		verb = "updated"
	}
	res.step(path, true, "%s", verb)
	return nil
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
