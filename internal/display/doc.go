// Package display renders what instance records publish (registration
// time, load) for people: the tables of `storks registry ls` and the
// pages of `storks console` share it, so that both show the same figure
// the same way.
package display
