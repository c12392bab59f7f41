// Package quickstart holds the test that keeps README.md's Quick start
// honest: it extracts the Quick start's files and shell commands, runs them
// in a fresh module that uses this checkout through a replace directive (as a
// newcomer does before Storks is published), builds the programs, and runs
// the provider and the consumer against a real embedded etcd.
//
// The README marks what the test uses with HTML comments, invisible when
// rendered:
//
//	<!-- quickstart: file PATH -->   the next fenced block is the file PATH,
//	                                 relative to the new module's directory
//	<!-- quickstart: sh DIR -->      the next fenced block is run by bash in
//	                                 DIR, relative to the workspace that holds
//	                                 the checkout ("storks") and the module
//
// A `git clone` line is not run: the workspace's "storks" is a link to this
// checkout instead.
package quickstart
