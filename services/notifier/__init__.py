"""The notifier: tells customers why they wait, for how long, and what happens next."""
