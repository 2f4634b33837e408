"""Reply-code knowledge base: the catalog loader, validator and matcher."""
