"""Networks: encoders (image -> global code + local feature map), critics, prior matching, MI terms."""
