package assembler

// CheckOutDir exposes the output-directory check to the tests.
var CheckOutDir = checkOutDir
