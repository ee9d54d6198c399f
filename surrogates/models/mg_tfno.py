"""Multi-grid tensorized FNO (Kossaifi et al., "Multi-Grid Tensorized Fourier Neural Operator for
High-Resolution PDEs").

A :class:`~surrogates.models.tfno.TFNO` applied patch by patch: the input field is decomposed by
:mod:`surrogates.nn.multigrid_patching` into ``2**levels x 2**levels`` padded patches, each carrying
the coarser-grid context of its surroundings as extra channels; the TFNO maps every patch (with its
``C * (levels + 1)`` channels) to the output on the padded patch, and the cropped outputs are stitched
back into the whole field.

Memory bounded by the patch size: the patches are processed ``patches_per_chunk`` positions at a
time (for the whole batch). In training, each chunk runs under activation checkpointing, so only the
activations of one chunk are alive at a time (the others are recomputed in the backward pass); the
loss is still the loss of the stitched whole field. On the CPU, the heap's freed pages go back to the
operating system between chunks (forward and backward, :func:`~surrogates.nn.host_memory.release_free_memory`):
glibc would otherwise keep every chunk's freed activations resident, so the process's memory would not
follow the live tensors that the chunking bounds. The paper instead trains on patches as
independent samples; both train the same patch-wise operator.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from surrogates.arguments import check_count, check_number
from surrogates.models.tfno import TFNO
from surrogates.nn.embeddings import GridEmbedding
from surrogates.nn.factorized_weights import FULL_RANK_MODES, MAX_CP_BYTES, ROUND_UP_MODES
from surrogates.nn.host_memory import release_free_memory
from surrogates.nn.multigrid_patching import BOUNDARIES, PatchGrid, multigrid_patches, stitch_patches

__all__ = ["MGTFNO"]


class MGTFNO(TFNO):
    """A 2D TFNO on multi-grid patches, stitched into the whole field.

    Parameters
    ----------
    in_channels, out_channels, modes, width, n_layers, projection_channels, positional_embedding,
    activation, padding, grid, lifting_channels, channel_mlp_expansion, norm, skip, factorization, rank,
    full_rank_modes, round_up_modes, max_cp_bytes
        As :class:`~surrogates.models.tfno.TFNO` (``in_channels`` are the field's; the TFNO inside
        sees ``(in_channels + 2) * (levels + 1)``: the field and, with ``positional_embedding``, the
        coordinates of the whole domain, both with their context). ``modes`` count on a patch's window.
    levels : int
        Context levels; ``2**levels`` patches per dimension. 0: the whole field, no patches. At most 16.
    patch_padding : float
        Points of the neighbours added on every side of a patch, as a fraction of the patch size, in
        ``[0, 1]`` (at most a whole patch of context on each side).
    boundary : {"periodic", "reflect"}
        How patches at the border see outside the domain.
    patches_per_chunk : int
        Patch positions processed together (for the whole batch); 0: all at once. Fewer positions
        per chunk lower the peak memory (training: activation checkpointing per chunk).
    release_memory : bool
        With chunks on the CPU, return the heap's free pages to the OS after every chunk's forward
        and before every chunk's backward, so that the resident set follows the live tensors
        (glibc keeps freed blocks resident otherwise). Measured at 256x256 (``tools/bench_tfno.py``):
        about 1.7x the CPU time of a training step, for the re-faulted pages.
    dim : int
        Must be 2.
    """

    registered_name = "mg_tfno"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | list[int] = 12,
        width: int = 32,
        n_layers: int = 4,
        dim: int = 2,
        projection_channels: int = 128,
        positional_embedding: bool = True,
        activation: str = "gelu",
        padding: float = 0.0,
        grid: str = "closed",
        lifting_channels: int = 0,
        channel_mlp_expansion: float = 0.0,
        norm: str = "none",
        skip: str = "linear",
        factorization: str = "tucker",
        rank: float | int | list[int] = 0.1,
        full_rank_modes: list[str] | tuple[str, ...] = FULL_RANK_MODES,
        round_up_modes: list[str] | tuple[str, ...] = ROUND_UP_MODES,
        max_cp_bytes: int = MAX_CP_BYTES,
        levels: int = 1,
        patch_padding: float = 0.125,
        boundary: str = "periodic",
        patches_per_chunk: int = 0,
        release_memory: bool = True,
    ):
        if dim != 2:
            raise ValueError(f"MGTFNO decomposes 2D fields only, got dim={dim}")
        check_number("patch_padding", patch_padding, 0.0, 1.0)
        check_count("levels", levels, 0, 16)
        if patches_per_chunk < 0:  # levels and patch_padding are checked just above
            raise ValueError(f"patches_per_chunk must be >= 0, got {patches_per_chunk}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        # The coordinates are those of the whole domain, appended before patching: a patch-local embedding
        # would be the same for every patch, which could not tell where it lies (e.g. next to a boundary).
        embedding = GridEmbedding(dim, grid) if positional_embedding else None
        field_channels = in_channels + (embedding.extra_channels if embedding is not None else 0)
        super().__init__(
            field_channels * (levels + 1), out_channels, modes=modes, width=width, n_layers=n_layers, dim=dim,
            projection_channels=projection_channels, positional_embedding=False,
            activation=activation, padding=padding, grid=grid, lifting_channels=lifting_channels,
            channel_mlp_expansion=channel_mlp_expansion, norm=norm, skip=skip, factorization=factorization,
            rank=rank, full_rank_modes=full_rank_modes, round_up_modes=round_up_modes, max_cp_bytes=max_cp_bytes,
        )
        self.field_channels = in_channels
        self.global_embedding = embedding
        self.levels, self.patch_padding, self.boundary = levels, float(patch_padding), boundary
        self.patches_per_chunk = patches_per_chunk
        self.release_memory = bool(release_memory)

    def patch_grid(self, sizes: tuple[int, int]) -> PatchGrid:
        """The decomposition of an ``n1 x n2`` field (``ValueError`` when the sizes do not divide)."""
        return PatchGrid(tuple(sizes), self.levels, self.patch_padding, self.boundary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map input fields to output fields through patches.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, in_channels, n1, n2)``, ``n1`` and ``n2`` multiples of ``2**levels``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, n1, n2)``.
        """
        if x.ndim != 4 or x.shape[1] != self.field_channels:
            raise ValueError(
                f"MGTFNO expects input of shape (batch, {self.field_channels}, n1, n2), got {tuple(x.shape)}"
            )
        grid = self.patch_grid(tuple(x.shape[2:]))
        if self.global_embedding is not None:
            x = self.global_embedding(x)
        batch, positions = x.shape[0], grid.per_dim**2
        patches = multigrid_patches(x, grid).unflatten(0, (batch, positions))
        weights = self.spectral_weights()  # reconstructed once, shared by every chunk
        step = self.patches_per_chunk or positions
        recompute = torch.is_grad_enabled() and step < positions
        release = self.release_memory and step < positions and x.device.type == "cpu"
        outputs = []
        for start in range(0, positions, step):
            chunk = patches[:, start : start + step].flatten(0, 1)
            if recompute:
                out = checkpoint(self.forward_with_weights, chunk, weights, use_reentrant=False)
            else:
                out = self.forward_with_weights(chunk, weights)
            if release:
                release_free_memory()
                if out.requires_grad:
                    out = _ReleaseBeforeBackward.apply(out)
            outputs.append(out.unflatten(0, (batch, -1)))
        return stitch_patches(torch.cat(outputs, dim=1).flatten(0, 1), grid)


class _ReleaseBeforeBackward(torch.autograd.Function):
    """Identity whose backward frees the heap's free pages before the chunk's recomputation and backward.

    The backward pass runs the chunks in reverse order, each output's backward just before its chunk's
    (it was created after it), so every chunk starts from a heap without the previous one's activations.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        release_free_memory()
        return grad
