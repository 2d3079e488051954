// Command meshtrust-controller is one controller-runtime manager that runs
// meshtrust's Vault issuer and/or its cacerts syncer.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	// The image (`make image`) has no operating-system root store; a Vault
	// with a publicly trusted certificate and no spec.caBundle is verified
	// against these roots instead. A system store, where there is one, wins.
	_ "golang.org/x/crypto/x509roots/fallback"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app"
)

func main() {
	opts := app.DefaultOptions()
	fs := pflag.NewFlagSet("meshtrust-controller", pflag.ExitOnError)
	opts.AddFlags(fs)
	printVersion := fs.Bool("version", false, "Print the version and exit.")
	_ = fs.Parse(os.Args[1:])
	if *printVersion {
		fmt.Println(app.VersionLine())
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.Zap)))
	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		ctrl.Log.Error(err, "meshtrust-controller failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, opts app.Options) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading Kubernetes client configuration: %w", err)
	}
	mgr, err := app.NewManager(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
