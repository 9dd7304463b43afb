"""The pure notifier core: triggers, templates, coalescing, delivery policy. No I/O."""
