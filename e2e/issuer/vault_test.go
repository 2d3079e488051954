package issuer_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshtrust/meshtrust/issuer/vault"
)

// TestTokenRenewal drives the Vault client's token cache against the real
// Vault with a fake clock: a token is renewed past half its TTL, and only
// an expired one causes a new login.
func TestTokenRenewal(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	sid, err := e.vault.Logical().WriteWithContext(ctx, "auth/approle/role/issuer/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	secretID := sid.Data["secret_id"].(string)
	m, err := vault.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now())
	auth := vault.AppRoleAuth("approle", e.roleID, func(context.Context) (string, error) { return secretID, nil })
	c, err := vault.NewClient(vault.Config{Address: e.lab.Vault.Addr, Auth: auth}, m, clk)
	if err != nil {
		t.Fatal(err)
	}
	logins := func() float64 { return testutil.ToFloat64(m.Logins.WithLabelValues(vault.MethodAppRole)) }
	renewals := func() float64 { return testutil.ToFloat64(m.Requests.WithLabelValues("renew", "200")) }

	steps := []struct {
		name                   string
		advance                time.Duration
		wantLogins, wantRenews float64
	}{
		{name: "first use logs in", wantLogins: 1},
		{name: "young token is reused", advance: 20 * time.Minute, wantLogins: 1},
		{name: "past half its TTL it is renewed", advance: 11 * time.Minute, wantLogins: 1, wantRenews: 1},
		{name: "renewed token is reused", advance: 20 * time.Minute, wantLogins: 1, wantRenews: 1},
		{name: "expired token means a new login", advance: 2 * time.Hour, wantLogins: 2, wantRenews: 1},
	}
	for _, s := range steps {
		clk.Step(s.advance)
		if err := c.Check(ctx, "pki", ""); err != nil {
			t.Fatalf("%s: Check: %v", s.name, err)
		}
		if logins() != s.wantLogins || renewals() != s.wantRenews {
			t.Fatalf("%s: logins=%v renewals=%v, want %v and %v", s.name, logins(), renewals(), s.wantLogins, s.wantRenews)
		}
	}
}
