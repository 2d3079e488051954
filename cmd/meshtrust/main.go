// Command meshtrust is the CLI for the team that owns Vault and the clusters:
// it bootstraps the shared root, enrols clusters and checks cross-cluster
// trust. The commands live in ./app so that tests can run them in-process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshtrust/meshtrust/cmd/meshtrust/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], app.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
