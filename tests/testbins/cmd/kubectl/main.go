// kubectl for flotilla's benchmarks (cargo xtask bench-apply): the same program as upstream's
// cmd/kubectl/kubectl.go of k8s.io/kubernetes v1.34.12, built from the module proxy with the same
// staging modules as kube-apiserver (see ../../build.sh). Built only on request (build.sh kubectl,
// cargo xtask testbins): the cluster tests do not run it.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Import to initialize client auth plugins.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	// As upstream: set the log verbosity before the command is built (flags are parsed later, in
	// cli.RunNoErrOutput), so that klog works while plugins and .kuberc are handled.
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Pretty-print the error and exit with an error.
		util.CheckErr(err)
	}
}
