"""The pure protocol: Noise (noise), length framing and padding (framing), the sans-I/O
session state machine (session), the message codec (wire) and the invite codec (invite).
Nothing here touches asyncio or a socket."""
