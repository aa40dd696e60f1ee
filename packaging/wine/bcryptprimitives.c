/* bcryptprimitives.dll for Wine 8 (Debian 12), which lacks it: Go 1.24+ programs call its
 * ProcessPrng at start-up. Windows 10 and later ship the real DLL; this one is only put into the
 * private Wine prefix of the tests and benchmarks. It fills the buffer from RtlGenRandom. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!RtlGenRandom(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
