"""Projection heads that map encoder embeddings to the contrastive space."""

import torch


class ProjectionHead(torch.nn.Module):
    """MLP head (MoCo v2 style), or the identity when ``hidden_dim`` is None.

    Arguments
    ---------
    input_dim : int
        Encoder embedding size.
    hidden_dim : int or None
        Hidden width; ``None`` makes the head an identity (MoCo v1).
    output_dim : int or None
        Output size (defaults to ``input_dim``).
    n_layers : int
        Number of linear layers (>= 2 when hidden_dim is set).

    Example
    -------
    >>> head = ProjectionHead(8, hidden_dim=16, output_dim=4)
    >>> head(torch.randn(5, 8)).shape
    torch.Size([5, 4])
    >>> ProjectionHead(8)(torch.ones(2, 8)).shape
    torch.Size([2, 8])
    """

    def __init__(self, input_dim, hidden_dim=None, output_dim=None, n_layers=2):
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim or input_dim
        if hidden_dim is None:
            if self.output_dim != input_dim:
                raise ValueError("an identity head needs output_dim == input_dim")
            self.net = torch.nn.Identity()
            return
        if n_layers < 2:
            raise ValueError("an MLP head needs n_layers >= 2")
        layers, dim = [], input_dim
        for _ in range(n_layers - 1):
            layers += [
                torch.nn.Linear(dim, hidden_dim),
                torch.nn.BatchNorm1d(hidden_dim),
                torch.nn.ReLU(inplace=True),
            ]
            dim = hidden_dim
        layers.append(torch.nn.Linear(dim, self.output_dim))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x):
        """Project (B, D_in) embeddings to (B, D_out)."""
        return self.net(x)
