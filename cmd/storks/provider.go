package main

import (
	"context"
	"fmt"

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
		providerCmd("disable", "ADDR", "Take the provider at ADDR out of rotation (no new calls)", 0),
		providerCmd("enable", "ADDR", "Put the provider at ADDR back into rotation", 0),
		providerCmd("weight", "ADDR N", "Set the weight of the provider at ADDR (\"default\": its registered weight)", 1),
		providerCmd("tag", "ADDR TAG", "Give the provider at ADDR routing tag TAG", 1),
		providerCmd("untag", "ADDR", "Remove the routing tag of the provider at ADDR (--registered: only the rule's)", 0),
	)
	return cmd
}

// providerCmd builds one shortcut, the rule.ProviderAction name: extra is
// how many arguments follow ADDR (the action's value).
func providerCmd(name, argsUse, short string, extra int) *cobra.Command {
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
			addr, action, value := args[0], name, ""
			if extra == 1 {
				value = args[1]
			}
			if err := registry.ValidateAddr(addr); err != nil {
				return usagef("ADDR %q is not host:port (the ADDRESS column of storks registry ls)", addr)
			}
			if name == rule.ActionUntag && onlyRule {
				action = rule.ActionClearTag
			}
			edit, did, err := rule.ProviderAction(action, value)
			if err != nil {
				return usagef("%v", err)
			}
			if service == "" && (cmd.Flags().Changed("version") || cmd.Flags().Changed("group")) {
				return usagef("--version and --group need --service%s", helpHint(cmd))
			}
			return runProvider(cmd, f, service, addr, edit, did)
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

// runProvider applies edit, which did, to the rules of the provider at
// addr, in service or in every service it exports.
func runProvider(cmd *cobra.Command, f ruleKeyFlags, service, addr string, edit func(*rule.Set, rule.Match), did string) error {
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
		if _, err := rule.Update(ctx, store, k, func(s *rule.Set) error { edit(s, m); return nil }); err != nil {
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
