"""The operations floor: what operators read and run around the core: metrics, the fleet report,
status, holds, break-glass, retire, the vault inventory.
"""
