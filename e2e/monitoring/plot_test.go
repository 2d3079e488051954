package monitoring_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/monitoring"
)

// PNGEnv names a file to write the dashboard picture of the alert test's
// run to, for deploy/README.md (`make dashboard-png`). Without it the
// picture goes to the test's temporary directory only.
const PNGEnv = "MESHTRUST_DASHBOARD_PNG"

// plottedPanels are the dashboard panels the picture shows, by title.
var plottedPanels = []string{
	"cacerts time left vs lifetime guard",
	"Vault requests by operation and status",
	"Issuer Ready",
	"CACertsSynced",
	"meshtrust alerts",
}

// plotRun draws the plotted panels' own queries, as the lab's Prometheus
// answers them over [start, end], with the Vault outage marked.
func plotRun(ctx context.Context, t *testing.T, prom *monitoring.Server, start, end time.Time, markers []monitoring.Marker) {
	t.Helper()
	// Prometheus evaluates a range only up to what it has scraped.
	lab.Eventually(t, time.Minute, "samples up to the end of the plotted range", func(ctx context.Context) error {
		s, err := prom.Query(ctx, `timestamp(up{job="meshtrust"})`)
		if err != nil {
			return err
		}
		if len(s) != 1 || s[0].Value < float64(end.Unix()) {
			return fmt.Errorf("last scrape %v, want after %d", s, end.Unix())
		}
		return nil
	})
	byTitle := map[string]panel{}
	for _, p := range readDashboard(t).allPanels() {
		byTitle[p.Title] = p
	}
	// Grafana's $__rate_interval is at least four scrape intervals; the
	// issuer's health check runs every 5s here, so 30s smooths it.
	vars := strings.NewReplacer("$__rate_interval", "30s")
	var panels []monitoring.PlotPanel
	for _, title := range plottedPanels {
		p, ok := byTitle[title]
		if !ok {
			t.Fatalf("the dashboard has no panel %q", title)
		}
		pp := monitoring.PlotPanel{Title: title, Unit: p.FieldConfig.Defaults.Unit}
		if p.Type == "state-timeline" {
			pp.States = states(t, p)
		}
		legends := map[string]string{}
		for _, tg := range p.Targets {
			series, err := prom.QueryRange(ctx, vars.Replace(tg.Expr), start, end, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range series {
				legends[fmt.Sprint(s.Metric)] = legend(tg.LegendFormat, s.Metric)
			}
			pp.Series = append(pp.Series, series...)
		}
		pp.Legend = func(m map[string]string) string { return legends[fmt.Sprint(m)] }
		panels = append(panels, pp)
	}
	paths := []string{filepath.Join(t.TempDir(), "dashboard.png")}
	if p := os.Getenv(PNGEnv); p != "" {
		paths = append(paths, p)
	}
	for _, path := range paths {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		err = monitoring.Plot(f, "meshtrust dashboard panels: the lab's Prometheus during TestExpiringIntermediateAlertFiresAndResolves", panels, markers, start, end)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dashboard picture: %s", path)
	}
}

var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legend applies a Grafana legend format ("{{op}} {{code}}"); without one
// it lists the labels that tell series apart.
func legend(format string, m map[string]string) string {
	if format != "" {
		return strings.Join(strings.Fields(legendLabel.ReplaceAllStringFunc(format, func(s string) string { return m[legendLabel.FindStringSubmatch(s)[1]] })), " ")
	}
	var parts []string
	for k, v := range m {
		if k != "job" && k != "instance" && k != "__name__" && k != "alertstate" && v != "" {
			parts = append(parts, v)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// states reads a state-timeline panel's value mappings.
func states(t *testing.T, p panel) map[float64]monitoring.State {
	t.Helper()
	out := map[float64]monitoring.State{}
	for _, m := range p.FieldConfig.Defaults.Mappings {
		for v, o := range m.Options {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("panel %q: mapping value %q: %v", p.Title, v, err)
			}
			out[f] = monitoring.State{Text: o.Text, Color: monitoring.NamedColor(o.Color)}
		}
	}
	if len(out) == 0 {
		t.Fatalf("state-timeline panel %q has no value mappings", p.Title)
	}
	return out
}
