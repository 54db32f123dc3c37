"""Everything that talks to Stripe (or the sandbox). The only package that imports stripe."""
