"""Evaluation: metrics (fidelity, LPIPS, FID, face landmark/identity backends), protocols and the evaluate job."""
