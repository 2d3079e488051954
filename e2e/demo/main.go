// Command demo runs the local multi-cluster lab: Vault and three clusters
// (kind1, kind2, kind3), each with cert-manager, all on 127.0.0.1.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshtrust/meshtrust/e2e/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	began := time.Now()
	fmt.Fprintln(out, "starting the lab: Vault and clusters kind1, kind2, kind3 with cert-manager")
	l, err := lab.Start(ctx, lab.Options{Clusters: []string{"kind1", "kind2", "kind3"}, KeepDir: true})
	if err != nil {
		return err
	}
	defer l.Stop()

	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "COMPONENT\tADDRESS\tSTARTED IN")
	for _, tm := range l.Timings {
		fmt.Fprintf(w, "%s\t%s\t%s\n", tm.Component, tm.Address, tm.Took.Round(time.Millisecond))
	}
	w.Flush()
	fmt.Fprintf(out, "lab up in %s; logs in %s\n", time.Since(began).Round(time.Millisecond), l.Dir)
	servers, err := lab.Descendants(os.Getpid())
	if err != nil {
		return err
	}
	const mib = 1 << 20
	fmt.Fprintf(out, "memory (RSS): %d server processes %d MiB, this process (cert-manager controllers) %d MiB\n",
		len(servers), lab.ResidentBytes(servers...)/mib, lab.ResidentBytes(os.Getpid())/mib)
	if err := l.Stop(); err != nil {
		return fmt.Errorf("stopping the lab: %w", err)
	}
	fmt.Fprintln(out, "lab stopped")
	return nil
}
