# Accelerator probe: the code of a 64 KiB BIOS ROM mapped just below 4 GiB (vmrunner adds the reset
# vector at offset 0xfff0, a near jump to offset 0). It enters 32-bit protected mode, builds identity
# page tables for the low 4 GiB, switches to 64-bit long mode, touches 15 MiB of RAM, runs integer
# and SSE work, and reports success by writing 0x2a to the isa-debug-exit port 0xf4 (QEMU then exits
# with status 0x55). Anything else (an internal error, an early exit, a hang) means the accelerator
# cannot run real guests. Rebuild probe.bin with ./build.sh after editing.
	.set ROMBASE, 0xffff0000
	.set PML4, 0x1000
	.set PDPT, 0x2000
	.set PD, 0x3000
	.text
	.code16
_start:
	cli
	lgdtl %cs:(gdtdesc - _start)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $(ROMBASE + pm32 - _start)

	.code32
pm32:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl $0x8000, %esp
	# zero PML4, PDPT and the four page directories
	cld
	xorl %eax, %eax
	movl $PML4, %edi
	movl $(6 * 4096 / 4), %ecx
	rep stosl
	movl $(PDPT | 3), PML4
	movl $PDPT, %edi
	movl $(PD | 3), %eax
	movl $4, %ecx
1:	movl %eax, (%edi)
	addl $8, %edi
	addl $0x1000, %eax
	loop 1b
	# 2048 2 MiB pages: identity map of 0..4 GiB
	movl $PD, %edi
	movl $0x83, %eax
	movl $2048, %ecx
2:	movl %eax, (%edi)
	addl $8, %edi
	addl $0x200000, %eax
	loop 2b
	movl $PML4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x220, %eax		# PAE | OSFXSR
	movl %eax, %cr4
	movl $0xc0000080, %ecx		# EFER.LME
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	andl $~0x4, %eax		# clear EM
	orl $0x80000002, %eax		# PG | MP
	movl %eax, %cr0
	ljmpl $0x18, $(ROMBASE + lm64 - _start)

	.code64
lm64:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %ss
	# first touch of 15 MiB of guest RAM, one write per page
	movq $0x100000, %rdi
3:	movq %rdi, (%rdi)
	addq $4096, %rdi
	cmpq $0x1000000, %rdi
	jb 3b
	# integer and SSE work
	movl $200000, %ecx
	movq $1, %rax
	movabsq $6364136223846793005, %rdx
	pxor %xmm1, %xmm1
4:	imulq %rdx, %rax
	movq %rax, %xmm0
	paddq %xmm0, %xmm1
	loop 4b
	movl $1, %eax
	cpuid
	movb $0x2a, %al
	outb %al, $0xf4
5:	hlt
	jmp 5b

	.p2align 3
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	# 0x08 code32
	.quad 0x00cf93000000ffff	# 0x10 data
	.quad 0x00af9b000000ffff	# 0x18 code64
gdtdesc:
	.word gdtdesc - gdt - 1
	.long ROMBASE + gdt - _start

