"""Routes: which submissions go where, and the `when` condition language that filters them."""
