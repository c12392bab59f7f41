package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

// ruleFormatHelp is the rule format, for --help.
const ruleFormatHelp = `A rule document holds the rules of one service key (service, version, group):

  {
    "version": 1,
    "overrides": [
      {"match": {"addr": "10.0.0.7:9000"}, "disabled": true},
      {"match": {"metadata": {"zone": "b"}}, "weight": 800},
      {"match": {"id": "7f3a..."}, "tag": "canary"}
    ],
    "policy":  {"timeout": "300ms", "failMode": "failover(2)"},
    "methods": {"SayHello": {"timeout": "50ms"}},
    "tagRouting": {"fallback": true, "untaggedToTagged": false}
  }

overrides match providers by id, addr and/or metadata (all given must match)
and set their weight (0..1000000), disable them ("disabled": true) or enable
them again (false), or set their routing tag ("" removes it); later overrides
win. policy and methods set the default timeout (for calls without a deadline)
and fail mode (failfast, failover(N), failtry(N), failbackup(D)) of every
method or of one. tagRouting: whether a tagged call falls back to untagged
providers when none has its tag, and whether untagged calls may reach tagged
providers (default: fallback on, untagged calls stay off tagged providers).

A field left out does nothing; deleting a rule (or the document) reverts it.
Consumers apply a change within about a second.`

func newRuleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rule",
		Short: "Read and write the governance rules of services",
		Long: `The rule commands read and write the rules that consumers of a service follow
at run time: provider weights, disabled providers, routing tags, default
timeouts and fail modes. Rules are stored in the registry (etcd, Consul,
ZooKeeper or inproc), apart from the provider records, and are validated
before they are written: a bad rule is refused with the field it names.

` + ruleFormatHelp,
		Example: `  storks rule ls --registry etcd://127.0.0.1:2379/storks
  storks rule get --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter
  storks rule set --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter -f rules.json
  storks rule set --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter --method SayHello --call-timeout 50ms
  storks rule rm  --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newRuleLsCmd(), newRuleGetCmd(), newRuleSetCmd(), newRuleRmCmd())
	return cmd
}

// ruleKeyFlags are the flags that name a registry and a service key.
type ruleKeyFlags struct {
	registry string
	version  string
	group    string
	timeout  time.Duration
}

func (f *ruleKeyFlags) add(cmd *cobra.Command) {
	registryFlag(cmd, &f.registry)
	cmd.Flags().StringVar(&f.version, "version", "", "version of the service key")
	cmd.Flags().StringVar(&f.group, "group", "", "group of the service key")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "give up if the registry does not answer within this time")
}

// open checks the flags and service, and opens the registry's rule store.
func (f *ruleKeyFlags) open(cmd *cobra.Command, service string) (context.Context, context.CancelFunc, registry.Registry, registry.RuleStore, registry.ServiceKey, error) {
	key := registry.ServiceKey{Service: service, Version: f.version, Group: f.group}
	if f.registry == "" {
		return nil, nil, nil, nil, key, usagef("--registry is required (or set $STORKS_REGISTRY)%s", helpHint(cmd))
	}
	if service != "" {
		if err := key.Validate(); err != nil {
			return nil, nil, nil, nil, key, usagef("%v", err)
		}
	}
	ctx, cancel := withTimeout(cmd.Context(), f.timeout)
	reg, err := openRegistry(ctx, f.registry, f.timeout)
	if err != nil {
		cancel()
		return nil, nil, nil, nil, key, err
	}
	store, err := rule.Store(reg)
	if err != nil {
		reg.Close()
		cancel()
		return nil, nil, nil, nil, key, fmt.Errorf("registry: %v", err)
	}
	return ctx, cancel, reg, store, key, nil
}

func newRuleLsCmd() *cobra.Command {
	var f ruleKeyFlags
	cmd := &cobra.Command{
		Use:     "ls --registry URL",
		Aliases: []string{"list"},
		Short:   "List the service keys that have rules",
		Example: `  storks rule ls --registry etcd://127.0.0.1:2379/storks`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel, reg, store, _, err := f.open(cmd, "")
			if err != nil {
				return err
			}
			defer cancel()
			defer reg.Close()
			keys, err := store.Rules(ctx)
			if err != nil {
				return registryError("listing rules", ctx, f.timeout, err)
			}
			if len(keys) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "storks: no rules")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tVERSION\tGROUP\tRULES")
			for _, k := range keys {
				summary := "invalid"
				if set, err := rule.Load(ctx, store, k); err == nil {
					summary = set.Summary()
				} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return registryError("reading the rules of "+k.String(), ctx, f.timeout, err)
				} else {
					summary = "invalid: " + err.Error()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Service, dash(k.Version), dash(k.Group), summary)
			}
			return tw.Flush()
		},
	}
	registryFlag(cmd, &f.registry)
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "give up if the registry does not answer within this time")
	return cmd
}

func newRuleGetCmd() *cobra.Command {
	var f ruleKeyFlags
	cmd := &cobra.Command{
		Use:   "get --registry URL [--version V] [--group G] SERVICE",
		Short: "Print the rule document of a service key",
		Long: `get prints the rule document of a service key as JSON, or says that it has
none. A stored document that does not validate is printed as it is, followed by
the validation error (consumers ignore such a document).`,
		Example: `  storks rule get --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter`,
		Args:    exactArgs(1, "the SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, reg, store, key, err := f.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer cancel()
			defer reg.Close()
			doc, err := store.GetRule(ctx, key)
			if errors.Is(err, registry.ErrNoRule) {
				fmt.Fprintf(cmd.ErrOrStderr(), "storks: no rules for %s\n", key)
				return nil
			}
			if err != nil {
				return registryError("reading the rules of "+key.String(), ctx, f.timeout, err)
			}
			out := cmd.OutOrStdout()
			if _, perr := rule.Parse(doc); perr != nil {
				out.Write(doc)
				return fmt.Errorf("the stored rules of %s are invalid (consumers ignore them): %v", key, perr)
			}
			_, err = out.Write(doc)
			return err
		},
	}
	f.add(cmd)
	return cmd
}

type ruleSetFlags struct {
	ruleKeyFlags
	file             string
	method           string
	callTimeout      time.Duration
	failMode         string
	fallback         bool
	untaggedToTagged bool
}

func newRuleSetCmd() *cobra.Command {
	var f ruleSetFlags
	cmd := &cobra.Command{
		Use:   "set --registry URL [--version V] [--group G] SERVICE (-f FILE | --call-timeout D | --fail-mode M | --tag-fallback B ...)",
		Short: "Write the rule document of a service key, or change part of it",
		Long: `set writes rules. With -f FILE (- for stdin) it replaces the whole document of
the service key with FILE, after validating it. With flags it changes only what
they name and keeps the rest of the document:

  --call-timeout D, --fail-mode M   the policy of every method, or of --method M
                                    (0 / "" removes the setting)
  --tag-fallback B, --untagged-to-tagged B   the tag routing rule

Providers are changed with "storks provider disable|enable|weight|tag".

` + ruleFormatHelp,
		Example: `  storks rule set --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter -f rules.json
  cat rules.json | storks rule set --registry etcd://127.0.0.1:2379/storks storks.examples.greeter.v1.Greeter -f -
  storks rule set --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter --method SayHello --call-timeout 50ms
  storks rule set --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter --tag-fallback=false`,
		Args: exactArgs(1, "the SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error { return runRuleSet(cmd, f, args[0]) },
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "replace the document with this file (- for stdin)")
	fl.StringVar(&f.method, "method", "", "apply --call-timeout and --fail-mode to this method (short name) only")
	fl.DurationVar(&f.callTimeout, "call-timeout", 0, "default timeout of calls without a deadline (0 removes it)")
	fl.StringVar(&f.failMode, "fail-mode", "", `fail mode: failfast, failover(N), failtry(N), failbackup(D) ("none" removes it)`)
	fl.BoolVar(&f.fallback, "tag-fallback", true, "tagged calls fall back to untagged providers when none has the tag")
	fl.BoolVar(&f.untaggedToTagged, "untagged-to-tagged", false, "untagged calls may reach tagged providers")
	return cmd
}

func runRuleSet(cmd *cobra.Command, f ruleSetFlags, service string) error {
	fl := cmd.Flags()
	policyFlags := fl.Changed("call-timeout") || fl.Changed("fail-mode")
	tagFlags := fl.Changed("tag-fallback") || fl.Changed("untagged-to-tagged")
	switch {
	case f.file != "" && (policyFlags || tagFlags || fl.Changed("method")):
		return usagef("-f replaces the whole document; it cannot be combined with --method, --call-timeout, --fail-mode or the tag flags%s", helpHint(cmd))
	case fl.Changed("method") && !policyFlags:
		return usagef("--method needs --call-timeout or --fail-mode%s", helpHint(cmd))
	case f.file == "" && !policyFlags && !tagFlags:
		return usagef("nothing to set: give -f FILE or --call-timeout, --fail-mode, --tag-fallback, --untagged-to-tagged%s", helpHint(cmd))
	case f.callTimeout < 0:
		return usagef("--call-timeout %v is negative%s", f.callTimeout, helpHint(cmd))
	}
	if f.failMode != "" && f.failMode != "none" {
		if _, err := rule.ParseFailMode(f.failMode); err != nil {
			return usagef("--fail-mode: %v", err)
		}
	}
	var doc []byte
	if f.file != "" {
		var err error
		if f.file == "-" {
			doc, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), registry.MaxRuleSize+1))
		} else {
			doc, err = os.ReadFile(f.file)
		}
		if err != nil {
			return fmt.Errorf("reading the rules: %v", err)
		}
		if _, err := rule.Parse(doc); err != nil {
			return fmt.Errorf("%s: %v", nameOf(f.file), err)
		}
	}
	ctx, cancel, reg, store, key, err := f.open(cmd, service)
	if err != nil {
		return err
	}
	defer cancel()
	defer reg.Close()
	if doc != nil {
		set, _ := rule.Parse(doc)
		if err := rule.Save(ctx, store, key, set); err != nil {
			return registryError("writing the rules of "+key.String(), ctx, f.timeout, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "rules of %s replaced (%s)\n", key, set.Summary())
		return nil
	}
	set, err := rule.Update(ctx, store, key, func(s *rule.Set) error {
		if policyFlags {
			editPolicy(s, f, fl.Changed("call-timeout"), fl.Changed("fail-mode"))
		}
		if tagFlags {
			tr := rule.TagRouting{Fallback: true}
			if s.TagRouting != nil {
				tr = *s.TagRouting
			}
			if fl.Changed("tag-fallback") {
				tr.Fallback = f.fallback
			}
			if fl.Changed("untagged-to-tagged") {
				tr.UntaggedToTagged = f.untaggedToTagged
			}
			s.TagRouting = &tr
		}
		return nil
	})
	if err != nil {
		return ruleWriteError(key, ctx, f.timeout, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "rules of %s: %s\n", key, set.Summary())
	return nil
}

// editPolicy applies --call-timeout and --fail-mode to the policy of the
// service or of --method.
func editPolicy(s *rule.Set, f ruleSetFlags, timeout, mode bool) {
	var p rule.Policy
	if f.method != "" {
		p = s.Methods[f.method]
	} else if s.Policy != nil {
		p = *s.Policy
	}
	if timeout {
		p.Timeout = rule.Duration(f.callTimeout)
	}
	if mode {
		p.FailMode = f.failMode
		if f.failMode == "none" {
			p.FailMode = ""
		}
	}
	empty := p.Timeout == 0 && p.FailMode == ""
	switch {
	case f.method != "" && empty:
		delete(s.Methods, f.method)
	case f.method != "":
		if s.Methods == nil {
			s.Methods = map[string]rule.Policy{}
		}
		s.Methods[f.method] = p
	case empty:
		s.Policy = nil
	default:
		s.Policy = &p
	}
}

func ruleWriteError(key registry.ServiceKey, ctx context.Context, timeout time.Duration, err error) error {
	var re *rule.Error
	var ie *registry.InputError
	if errors.As(err, &re) || errors.As(err, &ie) {
		return err
	}
	return registryError("writing the rules of "+key.String(), ctx, timeout, err)
}

func nameOf(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

func newRuleRmCmd() *cobra.Command {
	var f ruleKeyFlags
	var method string
	cmd := &cobra.Command{
		Use:     "rm --registry URL [--version V] [--group G] SERVICE",
		Aliases: []string{"delete"},
		Short:   "Delete the rule document of a service key (or one method's policy)",
		Long: `rm deletes the whole rule document of a service key, which reverts every rule:
consumers return to their code's settings and the registered weights and tags.
With --method M it removes only that method's policy.`,
		Example: `  storks rule rm --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter
  storks rule rm --registry etcd://127.0.0.1:2379/storks --version v1 storks.examples.greeter.v1.Greeter --method SayHello`,
		Args: exactArgs(1, "the SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, reg, store, key, err := f.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer cancel()
			defer reg.Close()
			if method != "" {
				_, err := rule.Update(ctx, store, key, func(s *rule.Set) error {
					if _, ok := s.Methods[method]; !ok {
						return fmt.Errorf("the rules of %s set no policy for method %q", key, method)
					}
					delete(s.Methods, method)
					return nil
				})
				if err != nil {
					return ruleWriteError(key, ctx, f.timeout, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed the policy of %s from the rules of %s\n", method, key)
				return nil
			}
			if err := store.DeleteRule(ctx, key); err != nil {
				return registryError("deleting the rules of "+key.String(), ctx, f.timeout, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rules of %s deleted\n", key)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&method, "method", "", "remove only this method's policy")
	return cmd
}
