// The seed's base-station solution in C++ with its debug line per station, built twice by build.sh:
// solution_endl (-DENDL) ends each line with std::endl, a newline and a flush, so a write syscall per
// line; solution_newline ends it with '\n', and the stream's buffer decides when to write.
// Fast-input template of competitive programming: sync_with_stdio(false) gives cout its own buffer.
#include <iostream>
#include <vector>

using namespace std;

#ifdef ENDL
#define EOL endl
#else
#define EOL '\n'
#endif

long long solution(long long n, const vector<long long>& stations, long long w) {
    long long answer = 0;
    long long start = 1;
    const long long cover = 2 * w + 1;
    for (long long station : stations) {
        long long count = station - w - start;
        if (count > 0) answer += (count + cover - 1) / cover;
        start = station + w + 1;
        cout << station << ' ' << count << ' ' << answer << EOL;  // debug line
    }
    if (start <= n) answer += (n - start + 1 + cover - 1) / cover;
    return answer;
}

int main() {
    ios::sync_with_stdio(false);
    cin.tie(nullptr);
    long long n, w, s;
    cin >> n >> w;
    vector<long long> stations;
    while (cin >> s) stations.push_back(s);
    cout << solution(n, stations, w) << EOL;
    return 0;
}
