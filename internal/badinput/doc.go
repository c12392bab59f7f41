// Package badinput holds a table test of bad inputs across Storks' public
// API and configuration: each must be rejected with an error that names the
// field or option at fault, and none may panic. It has no code of its own.
package badinput
