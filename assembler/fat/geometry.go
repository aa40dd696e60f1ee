package fat

import "fmt"

const (
	sectorSize  = 512
	numFATs     = 2
	minReserved = 32
	// minClusters is the smallest cluster count of a FAT32 volume: below it every FAT driver takes the
	// volume for FAT16 whatever the boot sector says.
	minClusters = 65525
	// maxClusters keeps cluster numbers below the reserved values 0x0FFFFFF7 (bad) and up (end of chain).
	maxClusters = 0x0FFFFFF5 - 2
)

// geometry is the layout of a FAT32 volume in 512-byte sectors.
type geometry struct {
	totalSectors uint32
	spc          uint32 // sectors per cluster
	reserved     uint32 // sectors before the first FAT
	fatSectors   uint32 // sectors of one FAT
	clusters     uint32 // data clusters, numbered 2..clusters+1
}

func (g geometry) clusterBytes() int64 { return int64(g.spc) * sectorSize }
func (g geometry) dataStart() int64 {
	return int64(g.reserved+numFATs*g.fatSectors) * sectorSize
}

// defaultSPC is Microsoft's FAT32 cluster size table (fatgen103, 512-byte sectors) by volume size.
func defaultSPC(totalSectors uint32) uint32 {
	switch {
	case totalSectors <= 532480: // 260 MB
		return 1
	case totalSectors <= 16777216: // 8 GB
		return 8
	case totalSectors <= 33554432: // 16 GB
		return 16
	case totalSectors <= 67108864: // 32 GB
		return 32
	default:
		return 64
	}
}

// newGeometry lays out a volume of size bytes. clusterSize 0 picks Microsoft's default for the size,
// falling back to smaller clusters when the default would leave fewer than FAT32's minimum count.
// The first FAT and the data area start on a multiple of the cluster size (at least 4 KiB), so that
// clusters line up with the pages and erase blocks below them when the volume itself is aligned.
func newGeometry(size int64, clusterSize int) (geometry, error) {
	if size <= 0 || size%sectorSize != 0 {
		return geometry{}, fmt.Errorf("volume size %d is not a positive multiple of %d bytes", size, sectorSize)
	}
	if size/sectorSize > 0xFFFFFFFF {
		return geometry{}, fmt.Errorf("volume size %d bytes is above FAT32's 2 TiB limit", size)
	}
	total := uint32(size / sectorSize)
	var spcs []uint32
	if clusterSize != 0 {
		if clusterSize < sectorSize || clusterSize > 64*sectorSize || clusterSize&(clusterSize-1) != 0 {
			return geometry{}, fmt.Errorf("cluster size %d is not a power of two between 512 and 32768 bytes", clusterSize)
		}
		spcs = []uint32{uint32(clusterSize / sectorSize)}
	} else {
		for spc := defaultSPC(total); spc >= 1; spc /= 2 {
			spcs = append(spcs, spc)
		}
	}
	var g geometry
	for _, spc := range spcs {
		g = layout(total, spc)
		if g.clusters >= minClusters && g.clusters <= maxClusters {
			return g, nil
		}
	}
	if g.clusters > maxClusters {
		return geometry{}, fmt.Errorf("%d clusters of %d bytes are more than FAT32 can address: choose larger clusters", g.clusters, g.clusterBytes())
	}
	// Smallest volume that works with the cluster size tried last.
	need := int64(minClusters)*g.clusterBytes() + int64(g.reserved)*sectorSize + 2*int64(minClusters+2)*4
	return geometry{}, fmt.Errorf("%w: %d bytes make %d clusters of %d bytes, FAT32 needs at least %d (about %d MiB)",
		ErrTooSmall, size, g.clusters, g.clusterBytes(), minClusters, need>>20+1)
}

func layout(total, spc uint32) geometry {
	align := max(spc, 8)
	g := geometry{totalSectors: total, spc: spc, reserved: roundUp(minReserved, align)}
	if total <= g.reserved {
		return g
	}
	// fatgen103's FAT size estimate (never too small): each cluster needs 4 bytes in each FAT.
	tmp1 := uint64(total - g.reserved)
	tmp2 := uint64(128*spc + 1)
	fat := uint32((tmp1 + tmp2 - 1) / tmp2)
	g.fatSectors = roundUp(fat, align)
	if used := g.reserved + numFATs*g.fatSectors; used < total {
		g.clusters = (total - used) / spc
	}
	// The FAT must hold an entry for every cluster plus the two reserved ones.
	if limit := g.fatSectors*(sectorSize/4) - 2; g.clusters > limit {
		g.clusters = limit
	}
	return g
}

func roundUp(n, m uint32) uint32 { return (n + m - 1) / m * m }
