// Package rule defines Storks governance rules: the typed, versioned JSON
// documents that an operator writes into a registry (with `storks rule`,
// `storks provider disable` or the console) to change, at run time and
// without a restart, how consumers call a service:
//
//   - overrides, matched by instance ID, address or metadata, that set a
//     provider's weight, disable it (no traffic), enable it again or set
//     its routing tag;
//   - the default timeout and fail mode of the service or of one method;
//   - tag routing: calls carrying a tag (runtime.NewTagContext, which the
//     calls a handler makes with its context carry on) go to providers
//     with that tag; the rule says whether a tag without providers falls
//     back to untagged ones and whether untagged calls may reach tagged
//     providers.
//
// A document holds the rules of one service key:
//
//	{
//	  "version": 1,
//	  "overrides": [
//	    {"match": {"addr": "10.0.0.7:9000"}, "disabled": true},
//	    {"match": {"metadata": {"zone": "b"}}, "weight": 800},
//	    {"match": {"id": "greeter-3"}, "tag": "canary"}
//	  ],
//	  "policy": {"timeout": "300ms", "failMode": "failover(2)"},
//	  "methods": {"SayHello": {"timeout": "50ms"}},
//	  "tagRouting": {"fallback": true, "untaggedToTagged": false}
//	}
//
// [Parse] is strict: an unknown field, a wrong type, a negative weight or
// an override that matches everything is an [*Error] naming the field, and
// [Save] refuses to store such a document. Consumers parse every document
// they receive the same way; one that does not parse (written around the
// CLI, say with etcdctl) is logged and ignored while the last good rules
// stay in force. A field left out has no effect: deleting a rule, or the
// whole document, reverts what it did (unlike Dubbo, apache/dubbo#8042).
//
// [Update] is how every edit is made (the CLI's shortcuts, the console's
// buttons): a read, an edit and a write that, on the stores with
// [registry.RuleRevisions] (all of the above), only succeeds if nobody
// wrote in between, and otherwise reads and edits again, so that two
// operators changing one service's rules at once both get their change.
// [SaveIf] is the conditional form of [Save], for a whole document edited
// by hand.
//
// Where documents live is the registry's business ([registry.RuleStore]):
// an etcd key without a lease, a Consul KV entry, a persistent ZooKeeper
// node; never next to the ephemeral instance records, so that rules survive
// provider restarts and registration churn.
package rule
