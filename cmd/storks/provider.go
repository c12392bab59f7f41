package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

func newProviderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Take a provider out of rotation, put it back, change its weight or tag",
		Long: `The provider commands are shortcuts that write rules (see "storks rule --help")
for one provider, named by its address as "storks registry ls" shows it. Without
SERVICE they change every service key that the provider at ADDR exports (found
in the registry); with it, only that service (in --version and --group), which
also works while the provider is down.

Consumers apply the change within about a second, without a restart; calls in
flight finish where they are.`,
		Example: `  storks provider disable --registry etcd://127.0.0.1:2379/storks 10.0.0.7:9000
  storks provider enable  --registry etcd://127.0.0.1:2379/storks 10.0.0.7:9000
  storks provider weight  --registry etcd://127.0.0.1:2379/storks 10.0.0.7:9000 800
  storks provider tag     --registry etcd://127.0.0.1:2379/storks 10.0.0.7:9000 canary
  storks provider untag   --registry etcd://127.0.0.1:2379/storks 10.0.0.7:9000`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		providerCmd("disable", "ADDR", "Take the provider at ADDR out of rotation (no new calls)", 0,
			func(s *rule.Set, m rule.Match, _ []string) string { s.Disable(m); return "disabled" }),
		providerCmd("enable", "ADDR", "Put the provider at ADDR back into rotation", 0,
			func(s *rule.Set, m rule.Match, _ []string) string { s.Enable(m); return "enabled" }),
		providerCmd("weight", "ADDR N", "Set the weight of the provider at ADDR (\"default\": its registered weight)", 1,
			func(s *rule.Set, m rule.Match, args []string) string {
				if args[0] == "default" {
					s.SetWeight(m, -1)
					return "given back its registered weight"
				}
				n, _ := strconv.Atoi(args[0])
				s.SetWeight(m, n)
				return "weighted " + args[0]
			}),
		providerCmd("tag", "ADDR TAG", "Give the provider at ADDR routing tag TAG", 1,
			func(s *rule.Set, m rule.Match, args []string) string {
				s.SetTag(m, args[0])
				return "tagged " + args[0]
			}),
		providerCmd("untag", "ADDR", "Remove the routing tag of the provider at ADDR (--registered: only the rule's)", 0, nil),
	)
	return cmd
}

// providerCmd builds one shortcut: extra is how many arguments follow ADDR,
// edit changes the rules of one service key and says what it did.
func providerCmd(name, argsUse, short string, extra int, edit func(*rule.Set, rule.Match, []string) string) *cobra.Command {
	var f ruleKeyFlags
	var service string
	var onlyRule bool
	cmd := &cobra.Command{
		Use:   name + " --registry URL [--service SERVICE [--version V] [--group G]] " + argsUse,
		Short: short,
		Example: fmt.Sprintf("  storks provider %s --registry etcd://127.0.0.1:2379/storks 10.0.0.7:9000%s\n"+
			"  storks provider %s --registry etcd://127.0.0.1:2379/storks --service storks.examples.greeter.v1.Greeter --version v1 10.0.0.7:9000%s",
			name, exampleArgs(name), name, exampleArgs(name)),
		Args: exactArgs(1+extra, argsUse),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, rest := args[0], args[1:]
			if err := registry.ValidateAddr(addr); err != nil {
				return usagef("ADDR %q is not host:port (the ADDRESS column of storks registry ls)", addr)
			}
			switch name {
			case "weight":
				if n, err := strconv.Atoi(rest[0]); rest[0] != "default" && (err != nil || n < 0 || n > rule.MaxWeight) {
					return usagef("weight %q is not a number from 0 to %d (or \"default\")", rest[0], rule.MaxWeight)
				}
			case "tag":
				if err := rule.ValidateTag(rest[0]); err != nil {
					return usagef("TAG %v", err)
				}
			}
			if service == "" && (cmd.Flags().Changed("version") || cmd.Flags().Changed("group")) {
				return usagef("--version and --group need --service%s", helpHint(cmd))
			}
			do := edit
			if name == "untag" {
				do = func(s *rule.Set, m rule.Match, _ []string) string {
					if onlyRule {
						s.ClearTag(m)
						return "given back its registered tag"
					}
					s.SetTag(m, "")
					return "untagged"
				}
			}
			return runProvider(cmd, f, service, addr, rest, do)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&service, "service", "", "change only this service (default: every service the provider exports)")
	if name == "untag" {
		cmd.Flags().BoolVar(&onlyRule, "registered", false, "remove only the rule's tag: the tag the provider registered applies again")
	}
	return cmd
}

func exampleArgs(name string) string {
	switch name {
	case "weight":
		return " 800"
	case "tag":
		return " canary"
	}
	return ""
}

func runProvider(cmd *cobra.Command, f ruleKeyFlags, service, addr string, args []string, edit func(*rule.Set, rule.Match, []string) string) error {
	ctx, cancel, reg, store, key, err := f.open(cmd, service)
	if err != nil {
		return err
	}
	defer cancel()
	defer reg.Close()
	keys := []registry.ServiceKey{key}
	if service == "" {
		if keys, err = keysAt(ctx, reg, addr); err != nil {
			return registryError("finding the services of "+addr, ctx, f.timeout, err)
		}
		if len(keys) == 0 {
			return fmt.Errorf("no provider at %s in the registry; name the service with --service (and --version, --group) to change it while it is down", addr)
		}
	}
	m := rule.Match{Addr: addr}
	for _, k := range keys {
		var did string
		if _, err := rule.Update(ctx, store, k, func(s *rule.Set) error { did = edit(s, m, args); return nil }); err != nil {
			return ruleWriteError(k, ctx, f.timeout, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s for %s\n", addr, did, k)
	}
	return nil
}

// keysAt returns the provider keys with an instance at addr.
func keysAt(ctx context.Context, reg registry.Registry, addr string) ([]registry.ServiceKey, error) {
	lister, ok := reg.(registry.Lister)
	if !ok {
		return nil, fmt.Errorf("this registry cannot list its services; name one with --service")
	}
	all, err := lister.Services(ctx)
	if err != nil {
		return nil, err
	}
	m := rule.Match{Addr: addr}
	var keys []registry.ServiceKey
	for _, k := range all {
		if k.IsConsumer() {
			continue
		}
		list, err := reg.Discover(ctx, k)
		if err != nil {
			return nil, err
		}
		for _, in := range list {
			if m.Matches(in) {
				keys = append(keys, k)
				break
			}
		}
	}
	return keys, nil
}
