package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// newRootCmd builds the command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "storks",
		Short: "The Storks RPC toolchain: generate code, call services, inspect registries",
		Long: `storks is the command-line tool of Storks, a Go RPC toolchain with service
discovery built in.

It generates Go code from .proto files without protoc, calls methods of running
services with JSON in and out, describes what a running server serves (from
its gRPC reflection: no .proto files needed), lists and watches the providers
registered in a registry, and runs an embedded etcd for local development.`,
		Example: `  storks generate -I proto --go_out=gen --storks_out=gen proto/hello/v1/hello.proto
  storks dev
  storks registry ls --registry etcd://127.0.0.1:2379/storks
  storks describe --addr 127.0.0.1:8972 hello.v1.Greeter
  storks call --registry etcd://127.0.0.1:2379/storks hello.v1.Greeter/SayHello '{"name": "storks"}'`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          subcommandArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newGenerateCmd(),
		newCallCmd(),
		newDescribeCmd(),
		newRegistryCmd(),
		newRuleCmd(),
		newProviderCmd(),
		newConsoleCmd(),
		newDevCmd(),
		newVersionCmd(),
	)

	// Cobra adds the help and completion commands when it runs; add them
	// now to give them examples like every other command.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = "  storks help generate\n  storks help registry watch"
		case "completion":
			c.Example = "  source <(storks completion bash)\n  storks completion zsh > \"${fpath[1]}/_storks\""
			for _, sh := range c.Commands() {
				if sh.Example == "" {
					sh.Example = "  storks completion " + sh.Name() + " > storks-completion." + sh.Name()
				}
			}
		}
	}
	return root
}

// flagError turns a flag parsing error into a one-line usage error that
// points to the command's help.
func flagError(cmd *cobra.Command, err error) error {
	return usageError{fmt.Errorf("%v%s", err, helpHint(cmd))}
}

// subcommandArgs is the Args of commands that only group subcommands: any
// argument is an unknown subcommand.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", strings.Join(s, `" or "`))
	} else {
		msg += helpHint(cmd)
	}
	return usageError{fmt.Errorf("%s", msg)}
}

// exactArgs is cobra.ExactArgs with one-line messages that name the
// arguments.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usagef("missing %s%s", what, helpHint(cmd))
		case len(args) > n && n == 0:
			return usagef("unexpected argument %q: %s takes none%s", args[0], cmd.CommandPath(), helpHint(cmd))
		case len(args) > n:
			return usagef("unexpected argument %q: want %s%s", args[n], what, helpHint(cmd))
		}
		return nil
	}
}

// rangeArgs accepts min to max arguments.
func rangeArgs(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usagef("missing %s%s", what, helpHint(cmd))
		case len(args) > max:
			return usagef("unexpected argument %q: want %s%s", args[max], what, helpHint(cmd))
		}
		return nil
	}
}

// registryFlag adds --registry, defaulting to $STORKS_REGISTRY.
func registryFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "registry", os.Getenv("STORKS_REGISTRY"),
		"registry URL, e.g. etcd://127.0.0.1:2379/storks (default $STORKS_REGISTRY)")
}
