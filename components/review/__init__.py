"""Closing the loop on flagged labels: where each sample came from, pictures of it, corrections fed back."""
